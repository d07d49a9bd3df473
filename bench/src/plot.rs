//! An SVG bar chart of a `results.json` that `infra/bench.py` wrote: lines (or records) per
//! second of sluice and of each peer, transform and ingest, on a log scale.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// One bar: its label, its value and whether it is sluice's.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// `transform: duckdb struct`, say.
    pub label: String,
    /// Lines (records) per second.
    pub value: f64,
    /// Whether the bar is sluice's own.
    pub sluice: bool,
}

/// The bars of a results file: for transform then ingest, sluice first, then each peer.
pub fn bars(results: &serde_json::Value) -> Vec<Bar> {
    let mut bars = Vec::new();
    for (step, rate) in [
        ("transform", "lines_per_sec"),
        ("ingest", "records_per_sec"),
    ] {
        let section = &results[step];
        if let Some(v) = section["sluice"][rate].as_f64() {
            bars.push(Bar {
                label: format!("{step}: sluice"),
                value: v,
                sluice: true,
            });
        }
        for peer in section["peers"].as_array().into_iter().flatten() {
            if let (Some(name), Some(v)) = (peer["name"].as_str(), peer[rate].as_f64()) {
                bars.push(Bar {
                    label: format!("{step}: {name}"),
                    value: v,
                    sluice: false,
                });
            }
        }
    }
    bars.retain(|b| b.value > 0.0);
    bars
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Draws the chart of `results` into `path`.
pub fn draw(results: &serde_json::Value, path: &Path) -> anyhow::Result<()> {
    let bars = bars(results);
    if bars.is_empty() {
        anyhow::bail!("no rate to plot in the results");
    }
    let min = bars.iter().map(|b| b.value).fold(f64::INFINITY, f64::min);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    let lo = 10f64.powf(min.log10().floor());
    let hi = 10f64.powf((max * 1.5).log10().ceil());
    let height = u32::try_from(90 + 34 * bars.len()).unwrap_or(600);
    let n = results["n"].as_u64().unwrap_or(0);
    // The first bar at the top: segment `last - i` holds bar `i`.
    let last = bars.len() - 1;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "sluice bench, N = {}: lines (records) per second, one core",
                thousands(n as f64)
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .margin_right(48)
        .x_label_area_size(32)
        .y_label_area_size(240)
        .build_cartesian_2d((lo..hi).log_scale(), (0..last).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("per second (log scale)")
        .x_label_formatter(&|v| thousands(*v))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => last
                .checked_sub(*i)
                .and_then(|i| bars.get(i))
                .map(|b| b.label.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    let blue = RGBColor(31, 119, 180);
    let grey = RGBColor(150, 150, 150);
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let color = if b.sluice { blue } else { grey };
        let mut bar = Rectangle::new(
            [
                (lo, SegmentValue::Exact(last - i)),
                (b.value, SegmentValue::Exact(last - i + 1)),
            ],
            color.filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!(" {}", thousands(b.value)),
            (b.value, SegmentValue::CenterOf(last - i)),
            ("sans-serif", 13),
        )
    }))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-1000.0), "-1,000");
    }

    #[test]
    fn a_chart_of_every_rate_is_drawn() {
        let results = serde_json::json!({
            "n": 2000,
            "transform": {"sluice": {"lines_per_sec": 300000.0},
                          "peers": [{"name": "duckdb struct", "lines_per_sec": 100000.0}]},
            "ingest": {"sluice": {"records_per_sec": 500000.0},
                       "peers": [{"name": "python powertools", "records_per_sec": 10000.0}]}
        });
        let b = bars(&results);
        assert_eq!(b.len(), 4);
        assert!(b[0].sluice && !b[1].sluice && b[2].sluice);
        assert_eq!(b[3].label, "ingest: python powertools");
        let path = std::env::temp_dir().join(format!("sluice-bench-{}.svg", std::process::id()));
        draw(&results, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.contains("transform: sluice") && svg.contains("500,000"),
            "{svg}"
        );
        std::fs::remove_file(path).unwrap();
    }
}
