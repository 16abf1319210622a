//! `sentinel config` and `--config`: the effective TOML, overrides, and errors naming the key.

use sentinel::config::Config;

use crate::util::Workdir;

#[test]
fn config_prints_the_defaults_as_toml_that_reads_back() {
    let w = Workdir::new();
    let out = w.ok(&["config"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
    for key in [
        "halt_failure_rate = 0.05",
        "gate_min_devices = 100",
        "min_cohort = 30",
        "max_retries = 5",
        "FIELD_SERVICE = 350.0",
        "[models.SEN-200]",
    ] {
        assert!(text.contains(key), "missing {key} in\n{text}");
    }
    // Printing the printed file again gives the same text.
    std::fs::write(w.path("effective.toml"), &text).unwrap();
    let again = w.ok(&["--config", "effective.toml", "config"]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
}

#[test]
fn a_file_overrides_only_what_it_names() {
    let w = Workdir::new();
    std::fs::write(
        w.path("c.toml"),
        "regions = [\"north\", \"south\"]\n[gate]\nhalt_failure_rate = 0.1\n[costs_usd]\nRMA = 900\n",
    )
    .unwrap();
    let out = w.ok(&["--config", "c.toml", "config"]);
    let c = Config::from_toml(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(c.regions, vec!["north", "south"]);
    assert_eq!(c.gate.halt_failure_rate, 0.1);
    assert_eq!(c.gate.gate_min_devices, 100);
    assert_eq!(c.costs_usd.RMA, 900.0);
    assert_eq!(c.costs_usd.FIELD_SERVICE, 350.0);
    assert_eq!(c.models, Config::default().models);
}

#[test]
fn bad_files_are_errors_that_name_the_key() {
    let w = Workdir::new();
    let cases = [
        ("unknown.toml", "[gate]\nhalt_rate = 0.1\n", "halt_rate"),
        (
            "type.toml",
            "[thresholds]\nmax_retries = \"five\"\n",
            "max_retries",
        ),
        (
            "range.toml",
            "[gate]\nhalt_failure_rate = 2.0\n",
            "gate.halt_failure_rate",
        ),
        ("top.toml", "colour = \"blue\"\n", "colour"),
        ("model.toml", "[models.X-1]\ndual_bank = true\n", "battery"),
        ("broken.toml", "[gate\n", "broken.toml"),
    ];
    for (file, text, needle) in cases {
        std::fs::write(w.path(file), text).unwrap();
        let err = w.fails(&["--config", file, "config"], 1);
        assert!(err.contains(needle) && err.contains(file), "{file}: {err}");
    }
    let err = w.fails(&["--config", "nowhere.toml", "config"], 1);
    assert!(err.contains("nowhere.toml"), "{err}");
    // A bad config stops every command before it writes anything.
    let err = w.fails(
        &["--config", "unknown.toml", "generate", "--devices", "10"],
        1,
    );
    assert!(err.contains("halt_rate"), "{err}");
    assert!(!w.path("out").exists());
}
