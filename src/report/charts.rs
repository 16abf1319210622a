//! The report's charts (SPEC section 7): each drawn once by one routine on any plotters backend,
//! then written as SVG (text kept as text, escaped by plotters) and PNG (text rasterized from a
//! font compiled into the binary, so a server with no fonts installed draws the same picture).
//!
//! The PNG container is written here on top of flate2's zlib stream: three chunks around the
//! pixels. (plotters' own encoder pulls in the `image` crate, whose features would force a
//! rebuild of polars; see the commit that added the dependencies.)

use std::io::Write;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::vocab::State;

/// Every chart is written at this size, in pixels.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 720;

/// The font family the charts ask for; registered from the embedded font.
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Ubuntu Light ships inside the binary (epaint_default_fonts); it cannot fail to parse.
        let _ = plotters::style::register_font(
            FAMILY,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// One failure-rate cell of the heatmap.
#[derive(Clone, Debug)]
pub struct HeatCell {
    pub region: usize,
    pub model: usize,
    pub devices: u64,
    pub failure_rate: f64,
}

/// region x hw_model failure rates.
#[derive(Clone, Debug)]
pub struct Heatmap {
    pub regions: Vec<String>,
    pub models: Vec<String>,
    pub cells: Vec<HeatCell>,
    /// The gate's halt rate, marked on the colour scale.
    pub halt_failure_rate: f64,
}

/// One region of the ROI chart.
#[derive(Clone, Debug)]
pub struct RoiBar {
    pub region: String,
    /// What the remote actions (RETRY_OTA, DEFER, REMOTE_ROLLBACK) cost.
    pub remote_cost_usd: f64,
    /// The truck rolls they avoid, in dollars.
    pub cost_avoided_usd: f64,
}

/// One region's devices by state.
#[derive(Clone, Debug)]
pub struct StateBar {
    pub region: String,
    pub devices: u64,
    /// Devices per state, in the order of [`STATES`].
    pub counts: Vec<u64>,
}

/// The states of the stacked chart, bottom to top, and their colours. HEALTHY is the rest.
pub const STATES: [(State, RGBColor); 6] = [
    (State::Updating, RGBColor(120, 144, 156)),
    (State::Stalled, RGBColor(255, 193, 7)),
    (State::Partial, RGBColor(245, 124, 0)),
    (State::RolledBack, RGBColor(123, 31, 162)),
    (State::Unreachable, RGBColor(66, 66, 66)),
    (State::Bricked, RGBColor(183, 28, 28)),
];

/// A chart's data, one variant per chart of the report.
#[derive(Clone, Debug)]
pub enum Chart {
    FailureHeatmap(Heatmap),
    RecoveryRoi(Vec<RoiBar>),
    StateBreakdown(Vec<StateBar>),
    /// Quarantined rows by primary reason, every reason listed.
    TriageReasons(Vec<(String, u64)>),
}

impl Chart {
    /// The file stem the chart is written under.
    pub fn name(&self) -> &'static str {
        match self {
            Chart::FailureHeatmap(_) => "failure_heatmap",
            Chart::RecoveryRoi(_) => "recovery_roi",
            Chart::StateBreakdown(_) => "state_breakdown",
            Chart::TriageReasons(_) => "triage_reasons",
        }
    }

    /// The chart's title, also its alt text in the report.
    pub fn title(&self) -> &'static str {
        match self {
            Chart::FailureHeatmap(_) => "Failure rate by region and hardware model",
            Chart::RecoveryRoi(_) => "Remote recovery: cost and truck rolls avoided by region",
            Chart::StateBreakdown(_) => "Devices not HEALTHY, by state and region",
            Chart::TriageReasons(_) => "Quarantined reports by primary reason",
        }
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String> {
        register_font();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("drawing {}: {e}", self.name()))?;
        }
        Ok(out)
    }

    /// The chart as a PNG file.
    pub fn png(&self) -> Result<Vec<u8>> {
        register_font();
        let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("drawing {}: {e}", self.name()))?;
        }
        encode_png(&rgb, WIDTH, HEIGHT)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing {}: {e}", self.name());
        root.fill(&WHITE).map_err(err)?;
        match self {
            Chart::FailureHeatmap(h) => heatmap(root, self.title(), h).map_err(err),
            Chart::RecoveryRoi(bars) => roi(root, self.title(), bars).map_err(err),
            Chart::StateBreakdown(bars) => states(root, self.title(), bars).map_err(err),
            Chart::TriageReasons(bars) => reasons(root, self.title(), bars).map_err(err),
        }
    }
}

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Labels from the data, made safe to draw: control characters become `?`, long ones are cut.
fn label(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > 24 {
        let cut: String = clean.chars().take(23).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

fn centered(size: f64, color: RGBColor) -> TextStyle<'static> {
    (FAMILY, size)
        .into_font()
        .color(&color)
        .pos(Pos::new(HPos::Center, VPos::Center))
}

/// `n` segments, 0..n-1: plotters' integer ranges include their end.
fn segments(n: usize) -> std::ops::Range<usize> {
    0..n.max(1) - 1
}

/// Segment labels: the name of segment `i`, nothing elsewhere.
fn segment_name(names: &[String], v: &SegmentValue<usize>) -> String {
    match v {
        SegmentValue::CenterOf(i) => names.get(*i).map(|s| label(s)).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Thousands separators for counts.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Dollars: cents below $1,000, whole dollars with separators above.
pub fn usd(x: f64) -> String {
    if x.abs() < 1000.0 {
        format!("${x:.2}")
    } else {
        format!("${}", count(x.round() as u64))
    }
}

/// The heatmap's colour for a rate, on a scale from 0 to `top` (white, orange, dark red).
fn heat(rate: f64, top: f64) -> RGBColor {
    let t = if top > 0.0 {
        (rate / top).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let stops = [
        (255.0, 247.0, 236.0),
        (252.0, 141.0, 89.0),
        (153.0, 0.0, 13.0),
    ];
    let (a, b, u) = if t < 0.5 {
        (stops[0], stops[1], t * 2.0)
    } else {
        (stops[1], stops[2], (t - 0.5) * 2.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The top of the heatmap's colour scale: twice the halt rate, or the worst cell if higher.
fn heat_top(h: &Heatmap) -> f64 {
    let worst = h.cells.iter().map(|c| c.failure_rate).fold(0.0, f64::max);
    (2.0 * h.halt_failure_rate).max(worst).max(1e-9)
}

fn heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    h: &Heatmap,
) -> Drawn<DB> {
    let (main, legend) = root.split_horizontally(WIDTH - 150);
    let top = heat_top(h);
    // The y axis grows upwards; the first region belongs at the top.
    let rows = h.regions.len();
    let row = |region: usize| rows - 1 - region;
    let top_down: Vec<String> = h.regions.iter().rev().cloned().collect();
    let mut chart = ChartBuilder::on(&main)
        .caption(title, font(30.0))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(150)
        .build_cartesian_2d(
            segments(h.models.len()).into_segmented(),
            segments(h.regions.len()).into_segmented(),
        )?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(h.models.len().max(1))
        .y_labels(h.regions.len().max(1))
        .x_label_formatter(&|v| segment_name(&h.models, v))
        .y_label_formatter(&|v| segment_name(&top_down, v))
        .x_desc("hardware model")
        .y_desc("region")
        .label_style(font(18.0))
        .axis_desc_style(font(20.0))
        .draw()?;
    chart.draw_series(h.cells.iter().map(|c| {
        let mut r = Rectangle::new(
            [
                (
                    SegmentValue::Exact(c.model),
                    SegmentValue::Exact(row(c.region)),
                ),
                (
                    SegmentValue::Exact(c.model + 1),
                    SegmentValue::Exact(row(c.region) + 1),
                ),
            ],
            heat(c.failure_rate, top).filled(),
        );
        r.set_margin(1, 1, 1, 1);
        r
    }))?;
    chart.draw_series(h.cells.iter().map(|c| {
        let ink = if c.failure_rate / top > 0.55 {
            WHITE
        } else {
            BLACK
        };
        EmptyElement::at((
            SegmentValue::CenterOf(c.model),
            SegmentValue::CenterOf(row(c.region)),
        )) + Text::new(
            format!("{:.1}%", 100.0 * c.failure_rate),
            (0, -9),
            centered(18.0, ink),
        ) + Text::new(
            format!("n={}", count(c.devices)),
            (0, 11),
            centered(14.0, ink),
        )
    }))?;

    // The colour scale: a bar from 0 (bottom) to `top`, with ticks and the halt rate marked.
    let (x0, x1, y0, y1) = (48i32, 78i32, 90i32, HEIGHT as i32 - 90);
    legend.draw(&Text::new("failure rate", (10, 60), font(18.0)))?;
    let steps = 100;
    for s in 0..steps {
        let ya = y1 - (y1 - y0) * s / steps;
        let yb = y1 - (y1 - y0) * (s + 1) / steps;
        let rate = top * (s as f64 + 0.5) / steps as f64;
        legend.draw(&Rectangle::new(
            [(x0, yb), (x1, ya)],
            heat(rate, top).filled(),
        ))?;
    }
    legend.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;
    let y_of = |rate: f64| y1 - ((y1 - y0) as f64 * (rate / top)).round() as i32;
    for i in 0..=4 {
        let rate = top * i as f64 / 4.0;
        let y = y_of(rate);
        legend.draw(&PathElement::new(vec![(x1, y), (x1 + 6, y)], BLACK))?;
        legend.draw(&Text::new(
            format!("{:.1}%", 100.0 * rate),
            (x1 + 10, y - 8),
            font(16.0),
        ))?;
    }
    let y = y_of(h.halt_failure_rate);
    legend.draw(&PathElement::new(
        vec![(x0 - 6, y), (x1 + 6, y)],
        BLACK.stroke_width(3),
    ))?;
    legend.draw(&Text::new("halt", (4, y - 8), font(15.0)))?;
    Ok(())
}

fn roi<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[RoiBar],
) -> Drawn<DB> {
    let names: Vec<String> = bars.iter().map(|b| b.region.clone()).collect();
    let top = bars
        .iter()
        .map(|b| b.cost_avoided_usd.max(b.remote_cost_usd))
        .fold(1.0, f64::max);
    let floor = 0.01;
    let mut chart = ChartBuilder::on(root)
        .caption(title, font(30.0))
        .margin(16)
        .x_label_area_size(90)
        .y_label_area_size(110)
        .build_cartesian_2d(
            segments(bars.len()).into_segmented(),
            (floor..top * 20.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|v| segment_name(&names, v))
        .y_label_formatter(&|y| usd(*y))
        .y_desc("US dollars (log scale)")
        .x_desc("region")
        .label_style(font(16.0))
        .axis_desc_style(font(20.0))
        .draw()?;
    let width = chart.plotting_area().dim_in_pixel().0 / bars.len().max(1) as u32;
    let quarter = width / 8;
    let cost_color = RGBColor(25, 118, 210);
    let avoided_color = RGBColor(56, 142, 60);
    let bar = |i: usize, value: f64, left: bool, color: RGBColor| {
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(i), floor),
                (SegmentValue::Exact(i + 1), value.max(floor)),
            ],
            color.filled(),
        );
        if left {
            r.set_margin(0, 0, quarter, width / 2);
        } else {
            r.set_margin(0, 0, width / 2, quarter);
        }
        r
    };
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, b)| bar(i, b.remote_cost_usd, true, cost_color)),
        )?
        .label("remote actions' cost")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], cost_color.filled()));
    chart
        .draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, b)| bar(i, b.cost_avoided_usd, false, avoided_color)),
        )?
        .label("truck-roll cost avoided")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 6), (x + 14, y + 6)], avoided_color.filled())
        });
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let text = if b.remote_cost_usd > 0.0 {
            let r = (b.cost_avoided_usd - b.remote_cost_usd) / b.remote_cost_usd;
            format!("ROI {}×", count(r.max(0.0).round() as u64))
        } else {
            "no remote action".to_string()
        };
        let y = b.cost_avoided_usd.max(b.remote_cost_usd).max(floor) * 2.0;
        Text::new(text, (SegmentValue::CenterOf(i), y), centered(14.0, BLACK))
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(font(16.0))
        .draw()?;
    Ok(())
}

fn states<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[StateBar],
) -> Drawn<DB> {
    let names: Vec<String> = bars.iter().map(|b| b.region.clone()).collect();
    let share = |b: &StateBar, n: u64| 100.0 * n as f64 / b.devices.max(1) as f64;
    let top = bars
        .iter()
        .map(|b| share(b, b.counts.iter().sum()))
        .fold(1.0, f64::max)
        * 1.25;
    let mut chart = ChartBuilder::on(root)
        .caption(title, font(30.0))
        .margin(16)
        .x_label_area_size(90)
        .y_label_area_size(80)
        .build_cartesian_2d(segments(bars.len()).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|v| segment_name(&names, v))
        .y_label_formatter(&|y| format!("{y:.0}%"))
        .y_desc("share of the region's devices (HEALTHY is the rest)")
        .x_desc("region")
        .label_style(font(16.0))
        .axis_desc_style(font(18.0))
        .draw()?;
    let width = chart.plotting_area().dim_in_pixel().0 / bars.len().max(1) as u32;
    for (s, (state, color)) in STATES.iter().enumerate() {
        let color = *color;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let below: f64 = b.counts[..s].iter().map(|n| share(b, *n)).sum();
                let here = share(b, b.counts[s]);
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), below),
                        (SegmentValue::Exact(i + 1), below + here),
                    ],
                    color.filled(),
                );
                r.set_margin(0, 0, width / 6, width / 6);
                r
            }))?
            .label(state.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let failed = share(b, b.counts.iter().sum());
        Text::new(
            format!("{failed:.1}%"),
            (SegmentValue::CenterOf(i), failed + top * 0.03),
            centered(14.0, BLACK),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(font(16.0))
        .draw()?;
    Ok(())
}

fn reasons<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[(String, u64)],
) -> Drawn<DB> {
    // The y axis grows upwards; the first reason belongs at the top.
    let bars: Vec<&(String, u64)> = bars.iter().rev().collect();
    let names: Vec<String> = bars.iter().map(|(r, _)| r.clone()).collect();
    let top = bars.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64 * 1.2;
    let mut chart = ChartBuilder::on(root)
        .caption(title, font(30.0))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(190)
        .build_cartesian_2d(0.0..top, segments(bars.len()).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(bars.len().max(1))
        .y_label_formatter(&|v| segment_name(&names, v))
        .x_label_formatter(&|x| count(x.round() as u64))
        .x_desc("quarantined reports (rows)")
        .y_desc("primary reason")
        .label_style(font(16.0))
        .axis_desc_style(font(20.0))
        .draw()?;
    let height = chart.plotting_area().dim_in_pixel().1 / bars.len().max(1) as u32;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, n))| {
        let mut r = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*n as f64, SegmentValue::Exact(i + 1)),
            ],
            RGBColor(216, 67, 21).filled(),
        );
        r.set_margin(height / 6, height / 6, 0, 0);
        r
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, n))| {
        EmptyElement::at((*n as f64, SegmentValue::CenterOf(i)))
            + Text::new(
                count(*n),
                (6, 0),
                font(16.0).pos(Pos::new(HPos::Left, VPos::Center)),
            )
    }))?;
    Ok(())
}

/// An 8-bit RGB PNG: signature, IHDR, one IDAT (rows with filter 0, zlib-compressed), IEND.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let stride = width as usize * 3;
    anyhow::ensure!(rgb.len() == stride * height as usize, "pixel buffer size");
    let mut raw = Vec::with_capacity((stride + 1) * height as usize);
    for row in rgb.chunks_exact(stride) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, truecolour, deflate, filter 0, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &idat[..]),
        (b"IEND", &[][..]),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_chunks_carry_the_size_and_valid_crcs() {
        let png = encode_png(&[255, 0, 0, 0, 255, 0], 2, 1).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 2);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 1);
        // CRC of IEND is a constant of the format.
        assert_eq!(&png[png.len() - 4..], &[0xAE, 0x42, 0x60, 0x82]);
    }

    #[test]
    fn numbers_read_like_a_report() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(usd(0.5), "$0.50");
        assert_eq!(usd(275_450.0), "$275,450");
    }

    #[test]
    fn labels_lose_control_characters() {
        assert_eq!(label("a\u{0}b\nc"), "a?b?c");
        assert_eq!(label(&"x".repeat(30)).chars().count(), 24);
    }
}
