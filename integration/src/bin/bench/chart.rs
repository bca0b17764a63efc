//! The picture of the main table: throughput by broker window, one bar per contender, as an
//! SVG that BENCHMARKS.md shows. `bench windows` draws it from the medians it measured;
//! `bench chart OUT.svg WINDOW=RATE,RATE,...` draws it from medians given by hand (the order
//! of `CONTENDERS`, then paho-mqtt).

use std::fmt::Write;

/// The bars of one broker window.
pub(crate) struct Group {
    /// The window, as the table shows it.
    pub(crate) label: String,
    /// Contender and msg/s.
    pub(crate) bars: Vec<(&'static str, f64)>,
}

/// The contenders' colours, in the order of the bars.
const COLOURS: [&str; 4] = ["#8c8c8c", "#4c78a8", "#f58518", "#b279a2"];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 80.0;
const BOTTOM: f64 = 50.0;
const TOP: f64 = 50.0;

/// Grouped bars of `groups` under `title`, the y axis in thousands of msg/s.
pub(crate) fn svg(title: &str, groups: &[Group]) -> String {
    let top = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|(_, v)| *v))
        .fold(1.0_f64, f64::max);
    // A round top: the next multiple of 50,000 msg/s.
    let axis_top = (top / 50_000.0).ceil().max(1.0) * 50_000.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - 20.0;
    let group_w = plot_w / groups.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{LEFT}" y="22" font-size="14">{title}</text>"#
    );
    for step in 0..=5 {
        let value = axis_top * f64::from(step) / 5.0;
        let y = TOP + plot_h - plot_h * value / axis_top;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}k</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            value / 1000.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">msg/s</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (g, group) in groups.iter().enumerate() {
        let x0 = LEFT + group_w * g as f64;
        let bar_w = (group_w * 0.8) / group.bars.len().max(1) as f64;
        for (b, (_, value)) in group.bars.iter().enumerate() {
            let h = plot_h * value / axis_top;
            let x = x0 + group_w * 0.1 + bar_w * b as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{:.0} msg/s</title></rect>"#,
                TOP + plot_h - h,
                bar_w - 2.0,
                COLOURS.get(b).copied().unwrap_or("#54a24b"),
                value
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">broker window {}</text>"#,
            x0 + group_w / 2.0,
            TOP + plot_h + 20.0,
            group.label
        );
    }
    if let Some(first) = groups.first() {
        for (b, (name, _)) in first.bars.iter().enumerate() {
            let x = LEFT + 150.0 * b as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
                HEIGHT - 18.0,
                COLOURS.get(b).copied().unwrap_or("#54a24b"),
                x + 16.0,
                HEIGHT - 8.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// `bench chart OUT.svg WINDOW=RATE,RATE,...`: the picture from medians given by hand.
pub(crate) fn from_args(args: &[String]) -> Result<(), super::Error> {
    let [out, groups @ ..] = args else {
        return Err("usage: bench chart OUT.svg WINDOW=RATE,RATE,... ...".into());
    };
    let names = [
        "rumqttc",
        "Mooring in memory",
        "Mooring on redb",
        "paho-mqtt on files",
    ];
    let mut parsed = Vec::new();
    for group in groups {
        let (label, rates) = group
            .split_once('=')
            .ok_or_else(|| format!("{group}: write WINDOW=RATE,RATE,..."))?;
        let bars = rates
            .split(',')
            .zip(names)
            .map(|(rate, name)| rate.parse::<f64>().map(|r| (name, r)))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.push(Group {
            label: label.to_owned(),
            bars,
        });
    }
    std::fs::write(out, svg(TITLE, &parsed))?;
    println!("chart written to {out}");
    Ok(())
}

/// The title of the main chart.
pub(crate) const TITLE: &str = "64 B QoS 1, 16 tasks: msg/s by broker window (medians)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bar_is_drawn_to_scale_under_its_window() {
        let groups = vec![
            Group {
                label: "20".into(),
                bars: vec![("a", 100_000.0), ("b", 50_000.0)],
            },
            Group {
                label: "100".into(),
                bars: vec![("a", 25_000.0), ("b", 0.0)],
            },
        ];
        let text = svg("t", &groups);
        assert_eq!(text.matches("<title>").count(), 4);
        assert!(text.contains("broker window 20") && text.contains("broker window 100"));
        // The axis tops at 100,000: the tallest bar fills the plot, half of it is half.
        let heights: Vec<f64> = text
            .split(r#"height=""#)
            .skip(2)
            .filter_map(|rest| rest.split('"').next()?.parse().ok())
            .collect();
        let plot = HEIGHT - TOP - BOTTOM;
        assert!(heights.contains(&plot), "{heights:?}");
        assert!(heights.contains(&(plot / 2.0)), "{heights:?}");
        assert!(text.ends_with("</svg>\n"));
    }
}
