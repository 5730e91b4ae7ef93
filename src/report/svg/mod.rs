//! The report's drawings as SVG text: the causality arc diagram (`graph.rs`) and the timeline
//! (`timeline.rs`) are written by hand, since they are diagrams rather than charts; the charts
//! (`plots.rs`) go through plotters' SVG backend.

pub mod graph;
pub mod plots;
pub mod timeline;

/// A tick step, in seconds, from a 1-2-5 series, giving at most `ticks_max` ticks over `span_s`.
pub fn axis_step_s(span_s: f64, ticks_max: usize) -> f64 {
    const STEPS: [f64; 15] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
    ];
    STEPS
        .into_iter()
        .find(|&s| span_s / s <= ticks_max as f64)
        .unwrap_or_else(|| (span_s / ticks_max as f64).ceil())
}

/// `label` cut to what fits in `width_px` at the timeline's label size (about 5.6 px a character).
pub fn fit(label: &str, width_px: f64) -> String {
    let chars = ((width_px - 4.0) / 5.6).floor().max(1.0) as usize;
    super::digest::cut(label, chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_stay_within_the_count() {
        assert_eq!(axis_step_s(15.0, 12), 2.0);
        assert_eq!(axis_step_s(0.3, 12), 0.05);
        assert_eq!(axis_step_s(100_000.0, 10), 10_000.0);
        assert_eq!(fit("partition halves n1 n2 | n3", 40.0), "parti…");
    }
}
