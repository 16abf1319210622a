//! `sentinel report` and `sentinel run`: charts in both formats that decode, a self-contained
//! report.html, escaping of hostile strings, summary.json, exit code 3, bad input.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{AS_OF, Workdir};

const CHARTS: [&str; 4] = [
    "failure_heatmap",
    "recovery_roi",
    "state_breakdown",
    "triage_reasons",
];

/// The one report folder under out/reports.
fn report_dir(w: &Workdir) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(w.path("out/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "exactly one report folder, no leftovers: {dirs:?}"
    );
    dirs.into_iter().next().unwrap()
}

/// Decodes a PNG far enough to prove it whole: signature, chunk CRCs, IHDR, and an IDAT stream
/// that inflates to exactly one filtered row per scanline. Returns (width, height).
fn decode_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let (mut at, mut size, mut idat, mut ended) = (8, None, Vec::new(), false);
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(bytes[at + 8 + len..at + 12 + len].try_into().unwrap());
        let mut want = flate2::Crc::new();
        want.update(kind);
        want.update(data);
        assert_eq!(
            crc,
            want.sum(),
            "CRC of {:?}",
            String::from_utf8_lossy(kind)
        );
        match kind {
            b"IHDR" => {
                let w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                let h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(&data[8..10], &[8, 2], "8-bit RGB");
                size = Some((w, h));
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => ended = true,
            _ => {}
        }
        at += 12 + len;
    }
    assert!(ended, "IEND");
    let (w, h) = size.expect("IHDR");
    let mut pixels = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut pixels)
        .unwrap();
    assert_eq!(pixels.len(), (h * (1 + 3 * w)) as usize);
    let stride = (1 + 3 * w) as usize;
    assert!(pixels.chunks(stride).all(|row| row[0] <= 4), "filter bytes");
    // Not a blank canvas: the chart drew something other than the white background.
    assert!(
        pixels
            .chunks(stride)
            .any(|row| row[1..].iter().any(|b| *b != 255)),
        "{} is blank",
        path.display()
    );
    (w, h)
}

/// No script and no reference to anything outside the file, in any tag or in the CSS. (Escaped
/// text may spell `src=`; only real markup counts.)
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "report.html has a script");
    for tag in lower
        .split('<')
        .skip(1)
        .map(|t| t.split('>').next().unwrap())
    {
        for banned in ["http:", "https:", "src=", "href=", "url(", "on"] {
            let hit = if banned == "on" {
                // Event handler attributes: ` onload=`, ` onerror=`, ...
                tag.split_whitespace().skip(1).any(|a| a.starts_with("on"))
            } else {
                tag.contains(banned)
            };
            assert!(!hit, "report.html has {banned} in <{tag}>");
        }
    }
    let style = &lower[lower.find("<style>").unwrap()..lower.find("</style>").unwrap()];
    assert!(
        !style.contains("url(") && !style.contains("@import"),
        "CSS reaches out"
    );
}

#[test]
fn run_writes_every_output_and_exits_3_on_halt() {
    let w = Workdir::new();
    let args = [
        "run",
        "--devices",
        "4000",
        "--seed",
        "9",
        "--as-of",
        AS_OF,
        "--fail-on-halt",
    ];
    let out = w.cmd(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The planted weak-signal region halts; the summary says so and names the report.
    assert!(stderr.contains("HALT: ap-south"), "{stderr}");
    assert!(stderr.contains("report.html"), "{stderr}");
    // stderr is not a terminal here: no progress bar redraws, no escape sequences.
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );

    for file in [
        "raw/telemetry.parquet",
        "raw/telemetry.chaos.parquet",
        "raw/chaos_log.parquet",
        "sentinel.duckdb",
    ] {
        assert!(w.path("out").join(file).is_file(), "{file}");
    }
    for file in [
        "clean.parquet",
        "triage.parquet",
        "device_state.parquet",
        "recovery_plan.csv",
    ] {
        assert!(w.stage(file).is_file(), "stage/<run_id>/{file}");
    }
    let dir = report_dir(&w);
    for chart in CHARTS {
        assert_eq!(decode_png(&dir.join(format!("{chart}.png"))), (1200, 720));
        let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{chart}.svg: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert_eq!(doc.root_element().attribute("width"), Some("1200"));
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_self_contained(&html);
    assert_eq!(html.matches("<svg").count(), 4, "the four charts inline");
    for section in ["Rollout gate", "Top bottlenecks", "Charts", "Triage sample"] {
        assert!(html.contains(section), "{section}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for chart in CHARTS {
        assert!(
            md.contains(&format!("]({chart}.png)")),
            "report.md shows {chart}.png"
        );
    }

    // summary.json: the documented keys, and numbers that agree with the run's JSON summary.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    for key in [
        "run_id",
        "as_of",
        "inputs",
        "kpis",
        "gate",
        "halted_regions",
        "top_bottlenecks",
        "counts",
        "files",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    for key in [
        "devices",
        "healthy",
        "healthy_share",
        "failed",
        "bricked",
        "quarantined_rows",
        "blind_devices",
        "cost_avoided_usd",
    ] {
        assert!(summary["kpis"].get(key).is_some(), "kpis lacks {key}");
    }
    assert_eq!(summary["halted_regions"], serde_json::json!(["ap-south"]));
    assert_eq!(summary["as_of"], AS_OF);
    assert_eq!(summary["gate"].as_array().unwrap().len(), 12);
    assert_eq!(
        dir.file_name().unwrap().to_str().unwrap(),
        summary["run_id"].as_str().unwrap()
    );
    let files: Vec<&str> = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 11);
    for f in &files {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let by_state: u64 = summary["counts"]["devices_by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(Some(by_state), summary["kpis"]["devices"].as_u64());

    // Without --fail-on-halt the same gate is exit code 0; --json gives one object with each step.
    let out = w.ok(&[
        "--json",
        "--quiet",
        "run",
        "--devices",
        "4000",
        "--seed",
        "9",
        "--as-of",
        AS_OF,
    ]);
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["exit_code"], 0);
    assert_eq!(
        run["recover"]["run_id"], summary["run_id"],
        "same inputs, same run"
    );
    assert_eq!(run["recover"]["devices"], summary["kpis"]["devices"]);
    assert!(out.stderr.is_empty(), "--quiet");
    report_dir(&w);
}

#[test]
fn hostile_strings_are_escaped_in_html_svg_and_markdown() {
    let w = Workdir::new();
    let evil_region = "<script>alert(1)</script>";
    let evil_model = "M&</text>\"'";
    std::fs::write(
        w.path("evil.toml"),
        format!(
            "regions = [\"us-east\", {evil_region:?}, \"ap-south\"]\n\
             [models.{evil_model:?}]\ndual_bank = false\nbattery = true\n\
             [models.SEN-100]\ndual_bank = false\nbattery = true\n"
        ),
    )
    .unwrap();
    w.ok(&[
        "--quiet",
        "--config",
        "evil.toml",
        "run",
        "--devices",
        "3000",
        "--as-of",
        AS_OF,
    ]);
    // A quarantined row whose raw values are hostile too: the triage sample shows raw text.
    std::fs::write(
        w.path("evil.csv"),
        "device_id,region,hw_model,firmware_from,firmware_target,ota_status,update_started_at,reported_at\n\
         <img src=x onerror=alert(2)>,\"</td><script>\",SEN-100,4.1.2,4.2.0,queued,2026-11-25T01:00:00Z,2026-11-25T02:00:00Z\n",
    )
    .unwrap();
    w.ok(&[
        "--quiet",
        "--config",
        "evil.toml",
        "recover",
        "--input",
        "out/raw/telemetry.chaos.parquet",
        "--input",
        "evil.csv",
        "--as-of",
        AS_OF,
    ]);
    w.ok(&["--quiet", "--config", "evil.toml", "report"]);
    let reports: Vec<PathBuf> = std::fs::read_dir(w.path("out/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(reports.len(), 2, "one report per run");
    let dir = reports
        .iter()
        .find(|d| {
            std::fs::read_to_string(d.join("summary.json"))
                .unwrap()
                .contains("evil.csv")
        })
        .unwrap();

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_self_contained(&html);
    assert!(
        !html.contains(evil_region) && !html.contains("<img"),
        "raw markup in HTML"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped region"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "escaped raw device id"
    );
    assert!(
        html.contains("&lt;/td&gt;&lt;script&gt;"),
        "escaped raw region"
    );
    assert!(
        html.contains("M&amp;&lt;/text&gt;&quot;") && !html.contains(evil_model),
        "escaped model"
    );
    for chart in CHARTS {
        let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg"))).unwrap();
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{chart}.svg: {e}"));
        assert!(!svg.to_ascii_lowercase().contains("<script"), "{chart}.svg");
    }
    let heatmap = std::fs::read_to_string(dir.join("failure_heatmap.svg")).unwrap();
    assert!(
        heatmap.contains("&lt;script&gt;alert(1)&lt;/scrip"),
        "region label, cut at 24 characters"
    );
    assert!(
        heatmap.contains("M&amp;&lt;/text&gt;&quot;&apos;"),
        "model label"
    );
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        !md.contains("<script") && !md.contains("<img"),
        "raw markup in Markdown"
    );
}

#[test]
fn report_bad_input_is_a_clear_error_and_writes_nothing() {
    let w = Workdir::new();
    let err = w.fails(&["report"], 1);
    assert!(err.contains("no database"), "{err}");
    assert!(!w.path("out/reports").exists());

    let raw = w.generate(1500, 3);
    w.recover(&raw);
    let err = w.fails(&["report", "--run-id", "feedfacefeedface"], 1);
    assert!(
        err.contains("feedfacefeedface") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!w.path("out/reports").exists());

    // A reports "folder" that cannot be one.
    std::fs::write(w.path("out/reports"), "not a folder").unwrap();
    let err = w.fails(&["report"], 1);
    assert!(err.contains("reports"), "{err}");
    assert_eq!(
        std::fs::read_to_string(w.path("out/reports")).unwrap(),
        "not a folder"
    );
    std::fs::remove_file(w.path("out/reports")).unwrap();

    // A report written twice replaces itself: the same files, no temporary folders left over.
    w.ok(&["--quiet", "report"]);
    let first = std::fs::read(report_dir(&w).join("summary.json")).unwrap();
    w.ok(&["--quiet", "report"]);
    assert_eq!(
        std::fs::read(report_dir(&w).join("summary.json")).unwrap(),
        first
    );
    let mut names: Vec<String> = std::fs::read_dir(report_dir(&w))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 11, "{names:?}");
}

/// report.md and summary.json of the hand-written fixture, pinned: any change to what the exec
/// report says shows up here (the run id is filtered out).
#[test]
fn report_md_and_summary_json_match_their_snapshots() {
    let w = Workdir::new();
    std::fs::write(w.path("fleet.csv"), include_str!("../fixtures/fleet.csv")).unwrap();
    std::fs::write(
        w.path("small.toml"),
        "[gate]\nhalt_failure_rate = 0.25\ngate_min_devices = 4\nmin_cohort = 2\n",
    )
    .unwrap();
    let config = ["--quiet", "--config", "small.toml"];
    w.ok(&[
        &config[..],
        &["recover", "--input", "fleet.csv", "--as-of", AS_OF],
    ]
    .concat());
    w.ok(&[&config[..], &["report"]].concat());
    let dir = report_dir(&w);
    let run_id = dir.file_name().unwrap().to_string_lossy().to_string();
    for file in ["report.md", "summary.json"] {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .replace(&run_id, "[run_id________]");
        insta::assert_snapshot!(file, text);
    }
}
