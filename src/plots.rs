//! Report plots: line charts (mean ± std error bars, a shaded ceiling band, dashed guide lines),
//! heat maps and scatter plots, each laid out as a grid of panels with one legend, and written
//! as an SVG file and a PNG file from the same drawing code. The 2-D principal-component
//! projection that the code scatter plots use lives in [`crate::pca`].
//!
//! This module draws what it is given: which figures a result folder gets, and every number in
//! them, is decided by `report::folder`. Text is set in DejaVu Sans, embedded in the binary
//! (`assets/fonts/`, Bitstream Vera licence) and registered in plotters' `ab_glyph` font table,
//! so rendering needs no system font and no fontconfig.

use crate::results::write_atomic;
use crate::{Error, Result};
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// DejaVu Sans 2.37 (Debian fonts-dejavu-core), see `assets/fonts/DejaVuSans-LICENSE.txt`.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
/// The family name every text style uses; the embedded font is registered under it.
const FAMILY: &str = "sans-serif";

/// Pixel size of one panel, of the figure title band and of the legend column.
const PANEL_W: u32 = 500;
const PANEL_H: u32 = 360;
const TITLE_H: u32 = 44;
const LEGEND_W: u32 = 250;
/// Points drawn per scatter panel at most (the first ones, in pair order).
pub const MAX_SCATTER_POINTS: usize = 1000;

/// Tableau 10: distinguishable colours, indexed modulo 10.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];
/// Guide line colours: dark grey, black.
const GUIDES: [(u8, u8, u8); 2] = [(90, 90, 90), (0, 0, 0)];

/// Palette colour `i` (mod 10).
pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn guide_color(i: usize) -> RGBColor {
    let (r, g, b) = GUIDES[i % GUIDES.len()];
    RGBColor(r, g, b)
}

/// Register the embedded font once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::msg("the embedded plot font could not be parsed"))
    }
}

// ---------------------------------------------------------------------------------------------
// Figure descriptions

/// A figure: a grid of panels of one kind, a title and a legend column.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    /// Line charts.
    Line(LineChart),
    /// Heat maps.
    Heat(HeatMap),
    /// Scatter plots.
    Scatter(ScatterChart),
}

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XScale {
    /// Positions are the values.
    Linear,
    /// Positions are log2(x); ticks read as powers of two (codebook sizes).
    Log2,
}

/// Line charts sharing an x axis, laid out `columns` panels per row.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Figure title.
    pub title: String,
    /// Label of the shared x axis.
    pub x_label: String,
    /// How x values map to positions.
    pub x_scale: XScale,
    /// Panels per row.
    pub columns: usize,
    /// The panels, row by row.
    pub panels: Vec<LinePanel>,
}

/// One panel of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LinePanel {
    /// Panel title.
    pub title: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The methods' lines.
    pub series: Vec<Series>,
    /// A shaded range (e.g. population to type-oracle ceiling), drawn under everything.
    pub band: Option<Band>,
    /// Dashed reference lines (e.g. the prompt-oracle ceiling, the Bayes bound).
    pub guides: Vec<Guide>,
    /// The metric's range (e.g. `[0, 1]` for accuracies and NMI): the axis never extends past
    /// it (error bars beyond it are cut at the frame).
    pub y_clamp: Option<(f64, f64)>,
    /// A value the axis always shows (e.g. 0 for NMI), if any.
    pub y_include: Option<f64>,
}

/// A method's line: points with optional ± error bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Palette index.
    pub color: usize,
    /// The points, in x order.
    pub points: Vec<Point>,
    /// The series has no x value (a method the x axis does not apply to): drawn as a dashed
    /// horizontal line at its first point's y across the whole panel.
    pub constant: bool,
}

/// A point of a series: y = mean, err = std (None: no error bar).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Position on the x axis (before the scale).
    pub x: f64,
    /// Value (a mean).
    pub y: f64,
    /// Half-height of the error bar (a std); None draws none.
    pub err: Option<f64>,
}

/// A shaded range `(x, low, high)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Legend label.
    pub label: String,
    /// `(x, low, high)` points, in x order.
    pub points: Vec<(f64, f64, f64)>,
}

/// A dashed reference line through `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    /// Legend label.
    pub label: String,
    /// Index into the guide colours (dark grey, black).
    pub color: usize,
    /// The line's points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Heat maps sharing one diverging colour scale centred at 0.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Figure title.
    pub title: String,
    /// What the colour means, shown above the colour bar.
    pub value_label: String,
    /// Panels per row.
    pub columns: usize,
    /// The panels, row by row.
    pub panels: Vec<HeatPanel>,
}

/// One heat map: `values[row][col]`, rows drawn top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatPanel {
    /// Panel title.
    pub title: String,
    /// What the rows are.
    pub row_label: String,
    /// What the columns are.
    pub col_label: String,
    /// Row names, top to bottom.
    pub rows: Vec<String>,
    /// Column names, left to right.
    pub cols: Vec<String>,
    /// The cell values, `values[row][col]`.
    pub values: Vec<Vec<f64>>,
    /// Cells outlined in black (e.g. each type's matched code).
    pub marked: Vec<(usize, usize)>,
    /// What the outline means, for the legend.
    pub marked_label: String,
}

/// Scatter plots of points coloured by class.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterChart {
    /// Figure title.
    pub title: String,
    /// Panels per row.
    pub columns: usize,
    /// Class names, indexed by a point's class.
    pub classes: Vec<String>,
    /// The panels, row by row.
    pub panels: Vec<ScatterPanel>,
}

/// One scatter plot: `(x, y, class)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPanel {
    /// Panel title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The points as `(x, y, class)`.
    pub points: Vec<(f64, f64, usize)>,
}

impl Figure {
    fn grid(&self) -> (usize, usize) {
        let (n, columns) = match self {
            Figure::Line(c) => (c.panels.len(), c.columns),
            Figure::Heat(h) => (h.panels.len(), h.columns),
            Figure::Scatter(s) => (s.panels.len(), s.columns),
        };
        let columns = columns.clamp(1, n.max(1));
        (n.div_ceil(columns).max(1), columns)
    }

    fn title(&self) -> &str {
        match self {
            Figure::Line(c) => &c.title,
            Figure::Heat(h) => &h.title,
            Figure::Scatter(s) => &s.title,
        }
    }

    /// Pixel size: `columns · PANEL_W + LEGEND_W` by `TITLE_H + rows · PANEL_H`.
    pub fn size(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        (
            columns as u32 * PANEL_W + LEGEND_W,
            TITLE_H + rows as u32 * PANEL_H,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Draw `figure` into `<stem>.svg` and `<stem>.png` (both written atomically); returns the two
/// paths.
pub fn write_figure(figure: &Figure, stem: &Path) -> Result<[PathBuf; 2]> {
    ensure_font()?;
    let size = figure.size();
    let svg_path = stem.with_extension("svg");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(figure, &root).map_err(|e| draw_error(&svg_path, e))?;
        root.present().map_err(|e| draw_error(&svg_path, e))?;
    }
    write_atomic(&svg_path, svg.as_bytes())?;

    // The PNG encoder writes to a path; write beside the target, then rename (atomic).
    let png_path = stem.with_extension("png");
    let dir = png_path.parent().unwrap_or(Path::new("."));
    let name = png_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}.png", std::process::id()));
    let drawn = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        draw(figure, &root).map_err(|e| draw_error(&png_path, e))?;
        root.present().map_err(|e| draw_error(&png_path, e))
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &png_path).map_err(|e| Error::io(&png_path, e))?;
    Ok([svg_path, png_path])
}

fn draw_error<E: std::fmt::Debug>(path: &Path, e: E) -> Error {
    Error::msg(format!("{}: cannot draw the figure: {e:?}", path.display()))
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Draw a figure on any backend: title band, panel grid, legend column.
fn draw<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (rows, columns) = figure.grid();
    let (top, body) = root.split_vertically(TITLE_H);
    top.draw(&Text::new(
        figure.title().to_string(),
        (16, 12),
        (FAMILY, 21).into_font().color(&BLACK),
    ))?;
    let (grid, legend) = body.split_horizontally(columns as u32 * PANEL_W);
    let areas = grid.split_evenly((rows, columns));
    match figure {
        Figure::Line(c) => {
            for (panel, area) in c.panels.iter().zip(&areas) {
                draw_line_panel(c, panel, area)?;
            }
            draw_line_legend(c, &legend)?;
        }
        Figure::Heat(h) => {
            let vmax = h
                .panels
                .iter()
                .flat_map(|p| p.values.iter().flatten())
                .fold(0.0f64, |m, v| m.max(v.abs()));
            for (panel, area) in h.panels.iter().zip(&areas) {
                draw_heat_panel(panel, vmax, area)?;
            }
            draw_heat_legend(h, vmax, &legend)?;
        }
        Figure::Scatter(s) => {
            for (panel, area) in s.panels.iter().zip(&areas) {
                draw_scatter_panel(panel, area)?;
            }
            let entries: Vec<LegendEntry> = s
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| LegendEntry::Marker(c.clone(), color(i)))
                .collect();
            draw_legend(&entries, &legend)?;
        }
    }
    Ok(())
}

/// A number as a tick label: up to 3 decimals, trailing zeros trimmed.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `[lo, hi]` padded by 6 % of the span (at least ±0.02 around a flat range).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let span = (hi - lo).max(0.0);
    let pad = if span > 0.0 {
        0.06 * span
    } else {
        0.02_f64.max(lo.abs() * 0.05)
    };
    (lo - pad, hi + pad)
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn draw_line_panel<DB: DrawingBackend>(
    chart: &LineChart,
    panel: &LinePanel,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let fx = |x: f64| match chart.x_scale {
        XScale::Linear => x,
        XScale::Log2 => x.log2(),
    };
    let xs = panel
        .series
        .iter()
        .filter(|s| !s.constant)
        .flat_map(|s| s.points.iter().map(|p| fx(p.x)))
        .chain(
            panel
                .band
                .iter()
                .flat_map(|b| b.points.iter().map(|p| fx(p.0))),
        )
        .chain(
            panel
                .guides
                .iter()
                .flat_map(|g| g.points.iter().map(|p| fx(p.0))),
        );
    let (x0, x1) = bounds(xs).unwrap_or((0.0, 1.0));
    let (x0, x1) = padded(x0, x1);
    let ys = panel
        .series
        .iter()
        .flat_map(|s| {
            s.points.iter().flat_map(|p| {
                let e = p.err.unwrap_or(0.0);
                [p.y - e, p.y + e]
            })
        })
        .chain(
            panel
                .band
                .iter()
                .flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])),
        )
        .chain(
            panel
                .guides
                .iter()
                .flat_map(|g| g.points.iter().map(|p| p.1)),
        )
        .chain(panel.y_include);
    let (y0, y1) = bounds(ys).unwrap_or((0.0, 1.0));
    let (mut y0, mut y1) = padded(y0, y1);
    if let Some((lo, hi)) = panel.y_clamp {
        let slack = 0.01 * (hi - lo);
        y0 = y0.max(lo - slack);
        y1 = y1.min(hi + slack);
    }

    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 15))
        .margin_top(6)
        .margin_left(8)
        .margin_right(16)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let x_fmt = |v: &f64| match chart.x_scale {
        XScale::Linear => tick(*v),
        XScale::Log2 => {
            let r = v.round();
            if (v - r).abs() < 1e-6 {
                format!("{}", 2f64.powf(r))
            } else {
                String::new()
            }
        }
    };
    let x_ticks = match chart.x_scale {
        // One tick per integer log2 value in range.
        XScale::Log2 => ((x1.floor() - x0.ceil()) as usize + 1).clamp(2, 12),
        XScale::Linear => 8,
    };
    c.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&panel.y_label)
        .x_labels(x_ticks)
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|v| tick(*v))
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 13))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;

    if let Some(b) = &panel.band {
        let mut poly: Vec<(f64, f64)> = b.points.iter().map(|p| (fx(p.0), p.2)).collect();
        poly.extend(b.points.iter().rev().map(|p| (fx(p.0), p.1)));
        c.draw_series(std::iter::once(Polygon::new(
            poly,
            RGBColor(120, 120, 120).mix(0.18).filled(),
        )))?;
        for edge in [1usize, 2] {
            let line: Vec<(f64, f64)> = b
                .points
                .iter()
                .map(|p| (fx(p.0), if edge == 1 { p.1 } else { p.2 }))
                .collect();
            c.draw_series(LineSeries::new(
                line,
                RGBColor(150, 150, 150).stroke_width(1),
            ))?;
        }
    }
    for g in &panel.guides {
        let pts: Vec<(f64, f64)> = g.points.iter().map(|p| (fx(p.0), p.1)).collect();
        c.draw_series(DashedLineSeries::new(
            pts,
            7,
            5,
            guide_color(g.color).stroke_width(2),
        ))?;
    }
    let cap = 0.012 * (x1 - x0);
    for s in &panel.series {
        let col = color(s.color);
        if s.constant {
            if let Some(p) = s.points.first() {
                c.draw_series(DashedLineSeries::new(
                    [(x0, p.y), (x1, p.y)],
                    10,
                    6,
                    col.stroke_width(2),
                ))?;
            }
            continue;
        }
        let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (fx(p.x), p.y)).collect();
        c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?;
        c.draw_series(
            pts.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, col.filled())),
        )?;
        for p in &s.points {
            let Some(e) = p.err.filter(|e| *e > 0.0) else {
                continue;
            };
            let x = fx(p.x);
            let style = col.stroke_width(1);
            c.draw_series([
                PathElement::new(vec![(x, p.y - e), (x, p.y + e)], style),
                PathElement::new(vec![(x - cap, p.y - e), (x + cap, p.y - e)], style),
                PathElement::new(vec![(x - cap, p.y + e), (x + cap, p.y + e)], style),
            ])?;
        }
    }
    Ok(())
}

/// A legend line: a series, a shaded band, a dashed guide or a marker.
enum LegendEntry {
    Line(String, RGBColor, bool),
    Band(String),
    Marker(String, RGBColor),
    Text(String),
}

fn draw_line_legend<DB: DrawingBackend>(
    chart: &LineChart,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let mut entries: Vec<LegendEntry> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for p in &chart.panels {
        for s in &p.series {
            if !seen.contains(&s.label) {
                seen.push(s.label.clone());
                entries.push(LegendEntry::Line(
                    s.label.clone(),
                    color(s.color),
                    s.constant,
                ));
            }
        }
    }
    let mut extra = Vec::new();
    for p in &chart.panels {
        if let Some(b) = &p.band
            && !seen.contains(&b.label)
        {
            seen.push(b.label.clone());
            extra.push(LegendEntry::Band(b.label.clone()));
        }
        for g in &p.guides {
            if !seen.contains(&g.label) {
                seen.push(g.label.clone());
                extra.push(LegendEntry::Line(
                    g.label.clone(),
                    guide_color(g.color),
                    true,
                ));
            }
        }
    }
    if !extra.is_empty() {
        entries.push(LegendEntry::Text(String::new()));
        entries.extend(extra);
    }
    if chart.panels.iter().any(|p| {
        p.series
            .iter()
            .any(|s| s.points.iter().any(|q| q.err.is_some()))
    }) {
        entries.push(LegendEntry::Text(String::new()));
        entries.push(LegendEntry::Text("points: mean over seeds".into()));
        entries.push(LegendEntry::Text("bars: ± std over seeds".into()));
    }
    draw_legend(&entries, area)
}

/// Draw legend entries top-down from the top left of `area`, wrapping long labels.
fn draw_legend<DB: DrawingBackend>(
    entries: &[LegendEntry],
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let font = (FAMILY, 13).into_font().color(&BLACK);
    let mut y = 36i32;
    let x = 10i32;
    let text_x = x + 34;
    let max_chars = ((LEGEND_W as i32 - text_x - 6) / 7).max(8) as usize;
    for e in entries {
        let label = match e {
            LegendEntry::Line(l, c, dashed) => {
                if *dashed {
                    area.draw(&DashedPathElement::new(
                        vec![(x, y + 7), (x + 26, y + 7)],
                        6,
                        4,
                        c.stroke_width(2),
                    ))?;
                } else {
                    area.draw(&PathElement::new(
                        vec![(x, y + 7), (x + 26, y + 7)],
                        c.stroke_width(2),
                    ))?;
                    area.draw(&Circle::new((x + 13, y + 7), 4, c.filled()))?;
                }
                l
            }
            LegendEntry::Band(l) => {
                area.draw(&Rectangle::new(
                    [(x, y + 1), (x + 26, y + 13)],
                    RGBColor(120, 120, 120).mix(0.25).filled(),
                ))?;
                l
            }
            LegendEntry::Marker(l, c) => {
                area.draw(&Circle::new((x + 13, y + 7), 5, c.filled()))?;
                l
            }
            LegendEntry::Text(l) => {
                if l.is_empty() {
                    y += 8;
                    continue;
                }
                area.draw(&Text::new(l.clone(), (x, y), font.clone()))?;
                y += 18;
                continue;
            }
        };
        let lines = wrap(label, max_chars);
        for (i, line) in lines.iter().enumerate() {
            area.draw(&Text::new(
                line.clone(),
                (text_x, y + i as i32 * 16),
                font.clone(),
            ))?;
        }
        y += 16 * (lines.len() as i32 - 1) + 22;
    }
    Ok(())
}

/// Split `text` into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// Diverging colour for `v` in `[-vmax, vmax]`: white at 0, blue below, red above.
pub fn diverging(v: f64, vmax: f64) -> RGBColor {
    let t = if vmax > 0.0 {
        (v / vmax).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let (r, g, b) = if t >= 0.0 { PALETTE[3] } else { PALETTE[0] };
    let a = t.abs();
    let mix = |c: u8| (255.0 + (c as f64 - 255.0) * a).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

fn draw_heat_panel<DB: DrawingBackend>(
    panel: &HeatPanel,
    vmax: f64,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let nr = panel.rows.len().max(1);
    let nc = panel.cols.len().max(1);
    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 15))
        .margin_top(6)
        .margin_left(8)
        .margin_right(16)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(58)
        // An integer range a..b holds b - a + 1 values: 0..n-1 gives n segments (at least 2,
        // since a one-value range has no scale).
        .build_cartesian_2d(
            (0..nc.max(2) - 1).into_segmented(),
            (0..nr.max(2) - 1).into_segmented(),
        )?;
    // Row r is drawn at y = nr - 1 - r so that row 0 is on top.
    let col_name = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => panel.cols.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let row_name = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < nr => {
            panel.rows.get(nr - 1 - i).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    c.configure_mesh()
        .disable_mesh()
        .x_desc(&panel.col_label)
        .y_desc(&panel.row_label)
        .x_labels(nc)
        .y_labels(nr.min(16))
        .x_label_formatter(&col_name)
        .y_label_formatter(&row_name)
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 13))
        .draw()?;
    let cell = |r: usize, col: usize| {
        [
            (SegmentValue::Exact(col), SegmentValue::Exact(nr - 1 - r)),
            (SegmentValue::Exact(col + 1), SegmentValue::Exact(nr - r)),
        ]
    };
    for (r, row) in panel.values.iter().enumerate() {
        for (col, v) in row.iter().enumerate() {
            c.draw_series(std::iter::once(Rectangle::new(
                cell(r, col),
                diverging(*v, vmax).filled(),
            )))?;
        }
    }
    for &(r, col) in &panel.marked {
        if r < nr && col < nc {
            c.draw_series(std::iter::once(Rectangle::new(
                cell(r, col),
                BLACK.stroke_width(3),
            )))?;
        }
    }
    // Values in the cells when they are large enough to read.
    if nr <= 16 && nc <= 8 {
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        for (r, row) in panel.values.iter().enumerate() {
            for (col, v) in row.iter().enumerate() {
                let strong = vmax > 0.0 && v.abs() / vmax > 0.6;
                let style = (FAMILY, 12)
                    .into_font()
                    .color(if strong { &WHITE } else { &BLACK })
                    .pos(Pos::new(HPos::Center, VPos::Center));
                c.draw_series(std::iter::once(Text::new(
                    format!("{v:.2}"),
                    (
                        SegmentValue::CenterOf(col),
                        SegmentValue::CenterOf(nr - 1 - r),
                    ),
                    style,
                )))?;
            }
        }
    }
    Ok(())
}

fn draw_heat_legend<DB: DrawingBackend>(
    h: &HeatMap,
    vmax: f64,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let font = (FAMILY, 13).into_font().color(&BLACK);
    let (x, mut y) = (10i32, 36i32);
    for line in wrap(&h.value_label, 30) {
        area.draw(&Text::new(line, (x, y), font.clone()))?;
        y += 17;
    }
    y += 6;
    let (bar_top, bar_h, bar_w) = (y, 160i32, 22i32);
    for i in 0..bar_h {
        // Top of the bar is +vmax, bottom −vmax.
        let v = vmax * (1.0 - 2.0 * i as f64 / (bar_h - 1) as f64);
        area.draw(&Rectangle::new(
            [(x, bar_top + i), (x + bar_w, bar_top + i + 1)],
            diverging(v, vmax).filled(),
        ))?;
    }
    area.draw(&Rectangle::new(
        [(x, bar_top), (x + bar_w, bar_top + bar_h)],
        BLACK.stroke_width(1),
    ))?;
    for (frac, v) in [(0.0, vmax), (0.5, 0.0), (1.0, -vmax)] {
        let ty = bar_top + (frac * (bar_h - 1) as f64) as i32 - 6;
        area.draw(&Text::new(
            format!("{v:+.2}"),
            (x + bar_w + 8, ty),
            font.clone(),
        ))?;
    }
    y = bar_top + bar_h + 24;
    let marked_label = h
        .panels
        .iter()
        .find(|p| !p.marked.is_empty())
        .map(|p| p.marked_label.clone());
    if let Some(label) = marked_label {
        area.draw(&Rectangle::new(
            [(x, y), (x + 22, y + 14)],
            BLACK.stroke_width(3),
        ))?;
        for (i, line) in wrap(&label, 24).into_iter().enumerate() {
            area.draw(&Text::new(line, (x + 32, y + i as i32 * 16), font.clone()))?;
        }
    }
    Ok(())
}

fn draw_scatter_panel<DB: DrawingBackend>(
    panel: &ScatterPanel,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult<DB> {
    let (x0, x1) = bounds(panel.points.iter().map(|p| p.0)).unwrap_or((-1.0, 1.0));
    let (y0, y1) = bounds(panel.points.iter().map(|p| p.1)).unwrap_or((-1.0, 1.0));
    let (x0, x1) = padded(x0, x1);
    let (y0, y1) = padded(y0, y1);
    let mut c = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 15))
        .margin_top(6)
        .margin_left(8)
        .margin_right(16)
        .margin_bottom(6)
        .x_label_area_size(44)
        .y_label_area_size(58)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    c.configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 13))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()?;
    c.draw_series(
        panel
            .points
            .iter()
            .take(MAX_SCATTER_POINTS)
            .map(|&(x, y, k)| Circle::new((x, y), 3, color(k).mix(0.55).filled())),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_whole() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("averylongword x", 4), ["averylongword", "x"]);
    }

    #[test]
    fn diverging_colours_are_white_at_zero_and_saturated_at_the_ends() {
        assert_eq!(diverging(0.0, 2.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(2.0, 2.0), color(3));
        assert_eq!(diverging(-5.0, 2.0), color(0));
    }

    #[test]
    fn ticks_trim_zeros() {
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(-0.0001), "0");
    }
}
