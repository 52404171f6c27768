//! `loadtest --plot FILE.svg`: the turn-latency distribution and where the
//! time went per stage, as one SVG (plotters, no font files needed: the
//! viewer renders the text).

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// One stage's p50 and p95 in ms.
pub struct StageTimes {
    /// Stage name as shown.
    pub name: &'static str,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// Draws `latencies` (ms, any order) as a histogram with p50/p95 marks,
/// and `stages` as paired bars, side by side into `path`.
pub fn draw(path: &Path, title: &str, latencies: &[f64], stages: &[StageTimes]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(620);

    // Histogram in 20 ms bins.
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let max = sorted.last().copied().unwrap_or(100.0).max(100.0);
    let bins = ((max / 20.0).ceil() as usize + 1).min(500);
    let mut counts = vec![0u32; bins];
    for &l in &sorted {
        counts[((l / 20.0) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!("turn latency, {} turns", sorted.len()),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..(bins as f64 * 20.0), 0u32..(top + top / 5 + 1))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("ms from the caller's speech end to the first reply packet")
        .y_desc("turns")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, &c)| {
                    let x = i as f64 * 20.0;
                    Rectangle::new([(x, 0), (x + 18.0, c)], BLUE.mix(0.6).filled())
                }),
        )
        .map_err(|e| err(&e))?;
    for (p, label, color) in [(0.5, "p50", GREEN), (0.95, "p95", RED)] {
        let v = super::percentile(&sorted, p);
        chart
            .draw_series(LineSeries::new(
                [(v, 0), (v, top + top / 5)],
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(format!("{label} {v:.0} ms"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    // Stages: p50 and p95 bars per stage.
    let longest = stages.iter().map(|s| s.p95.max(s.p50)).fold(10.0, f64::max);
    let n = stages.len().max(1);
    let mut chart = ChartBuilder::on(&right)
        .caption("per stage (p50 | p95)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..n as f64, 0.0..longest * 1.15)
        .map_err(|e| err(&e))?;
    let names: Vec<&str> = stages.iter().map(|s| s.name).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 {
                names.get(i).map(|s| s.to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("ms")
        .draw()
        .map_err(|e| err(&e))?;
    for (offset, color, pick) in [
        (
            0.1,
            GREEN.mix(0.7),
            (|s: &StageTimes| s.p50) as fn(&StageTimes) -> f64,
        ),
        (0.5, RED.mix(0.7), |s: &StageTimes| s.p95),
    ] {
        chart
            .draw_series(stages.iter().enumerate().map(|(i, s)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0.0), (x + 0.38, pick(s))], color.filled())
            }))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_distribution_and_the_stages() {
        let path = std::env::temp_dir().join(format!("aiagc-plot-{}.svg", std::process::id()));
        let latencies: Vec<f64> = (0..200).map(|i| 300.0 + (i % 37) as f64 * 7.0).collect();
        let stages = [
            StageTimes {
                name: "turn end",
                p50: 250.0,
                p95: 320.0,
            },
            StageTimes {
                name: "stt",
                p50: 180.0,
                p95: 240.0,
            },
            StageTimes {
                name: "tts",
                p50: 3.0,
                p95: 6.0,
            },
        ];
        draw(&path, "aiagc loadtest", &latencies, &stages).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        // The histogram's occupied bins and 6 stage bars are drawn.
        let bins: std::collections::BTreeSet<u64> =
            latencies.iter().map(|l| (*l / 20.0) as u64).collect();
        assert!(svg.matches("<rect").count() >= bins.len() + stages.len() * 2);
        let p50 = super::super::percentile(
            &{
                let mut s = latencies.clone();
                s.sort_by(f64::total_cmp);
                s
            },
            0.5,
        );
        assert!(
            svg.contains(&format!("p50 {p50:.0} ms")),
            "legend names p50"
        );
        for s in &stages {
            assert!(svg.contains(s.name), "stage {} labelled", s.name);
        }
    }

    #[test]
    fn an_unwritable_path_is_an_error() {
        let e = draw(Path::new("/nonexistent/dir/x.svg"), "t", &[1.0], &[]).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/dir/x.svg"), "{e:#}");
    }
}
