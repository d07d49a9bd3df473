//! SVG charts of `sluice scale simulate --plot`: for each policy, one panel with the backlog (left
//! axis) and the batches running, the setting and the throttled writes a second (right axis)
//! over time.

use plotters::prelude::*;
use sluice_local::simulate::Sample;

/// At most this many points a series: a day's run is reduced, keeping each bucket's highest.
const MAX_POINTS: usize = 720;

/// Draws one panel a policy into `path` (SVG).
pub fn draw(
    path: &std::path::Path,
    title: &str,
    runs: &[(String, Vec<Sample>)],
) -> anyhow::Result<()> {
    let panels = runs.len().max(1);
    let height = u32::try_from(260 * panels + 40).unwrap_or(u32::MAX);
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    for (area, (policy, samples)) in root.split_evenly((panels, 1)).iter().zip(runs) {
        let samples = reduce(samples);
        let secs = samples.last().map_or(1, |s| s.t.max(1));
        let backlog_max = samples.iter().map(|s| s.backlog).max().unwrap_or(0).max(1);
        let right_max = samples
            .iter()
            .map(|s| u64::from(s.running.max(s.setting)).max(s.throttled))
            .max()
            .unwrap_or(0)
            .max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(policy, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0u64..secs, 0u64..backlog_max)?
            .set_secondary_coord(0u64..secs, 0u64..right_max);
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("backlog (messages)")
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("batches / throttles a second")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t, s.backlog)),
                &BLUE,
            ))?
            .label("backlog")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_secondary_series(LineSeries::new(
                samples.iter().map(|s| (s.t, u64::from(s.running))),
                &GREEN,
            ))?
            .label("batches running")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
        chart
            .draw_secondary_series(LineSeries::new(
                samples.iter().map(|s| (s.t, s.throttled)),
                &RED,
            ))?
            .label("throttled writes/s")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// At most [`MAX_POINTS`] samples: each bucket keeps its highest values, so spikes stay visible.
fn reduce(samples: &[Sample]) -> Vec<Sample> {
    let bucket = samples.len().div_ceil(MAX_POINTS).max(1);
    samples
        .chunks(bucket)
        .filter_map(|c| {
            let first = c.first()?;
            Some(Sample {
                t: first.t,
                backlog: c.iter().map(|s| s.backlog).max().unwrap_or(0),
                running: c.iter().map(|s| s.running).max().unwrap_or(0),
                setting: c.iter().map(|s| s.setting).max().unwrap_or(0),
                throttled: c.iter().map(|s| s.throttled).max().unwrap_or(0),
            })
        })
        .collect()
}
