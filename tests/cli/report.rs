//! `lpc-bench report` on the committed fixture sweep (`tests/fixtures/sweep-report/`) and on a
//! fresh `run` folder: every file is produced, SVGs are XML with drawn data, PNGs decode at the
//! size the layout gives, and reporting twice gives the same bytes.

use super::lpc_bench;
use std::path::Path;

/// Copy a folder tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sweep-report")
}

/// Every file under `dir`, relative, sorted, with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The SVG parses as XML and draws data: an `<svg>` root, a non-empty polyline or path, and
/// circles (line markers or scatter points) or rects (heat-map cells) beyond the background.
fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let count = |tag: &str| {
        doc.descendants()
            .filter(|n| n.tag_name().name() == tag)
            .count()
    };
    let has_line = doc.descendants().any(|n| match n.tag_name().name() {
        "polyline" => n
            .attribute("points")
            .is_some_and(|p| p.split_whitespace().count() >= 2),
        "path" => n.attribute("d").is_some_and(|d| d.len() > 4),
        "line" => true,
        _ => false,
    });
    assert!(has_line, "{}: no line drawn", path.display());
    assert!(
        count("circle") > 0 || count("rect") > 1,
        "{}: no data marks",
        path.display()
    );
    assert!(count("text") > 3, "{}: no labels", path.display());
}

/// The PNG decodes and has the given size.
fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    // Not blank: the image has more than one colour.
    let first = &buf[..3];
    assert!(
        buf[..info.buffer_size()].chunks(3).any(|px| px != first),
        "{}: blank image",
        path.display()
    );
    (info.width, info.height)
}

// Layout constants of `plots` (PANEL_W × PANEL_H per panel, TITLE_H, LEGEND_W), repeated here
// so the test checks the sizes independently: width = cols·500 + 250, height = 44 + rows·360.
fn layout(rows: u32, cols: u32) -> (u32, u32) {
    (cols * 500 + 250, 44 + rows * 360)
}

#[test]
fn report_on_the_fixture_sweep_writes_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    copy_tree(&fixture(), &dir);
    let out = lpc_bench(&["report", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The fixture grid: distance {0, 1} × flip {0, 0.2} × codebook {2, 4} × seeds {0, 1};
    // dpo takes no codebook, so 2·2·2·(1 + 2) = 24 cells.
    let merged = std::fs::read_to_string(dir.join("all-metrics.csv")).unwrap();
    assert_eq!(merged.lines().count(), 1 + 24);
    let summary = std::fs::read_to_string(dir.join("all-metrics-summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 12);

    // Figure sizes: (panel rows, panel columns). Line figures have one row per metric and one
    // column per value of the other global axis (2 here); heat maps and PCA one panel per grid
    // point of lpc-dpo at seed 0 (2·2·2 = 8 points, laid out in 4 columns).
    let expected = [
        ("accuracy-vs-distance", layout(2, 2)),
        ("nmi-vs-distance", layout(2, 2)),
        ("accuracy-vs-flip-rate", layout(2, 2)),
        // Codebook: x = K, facets = distance × flip rate = 4 columns, 3 metrics.
        ("codebook", layout(3, 4)),
        ("steering-lpc-dpo", layout(2, 4)),
        ("codes-pca-lpc-dpo", layout(2, 4)),
    ];
    let plots = dir.join("plots");
    let mut files: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = expected
        .iter()
        .flat_map(|(stem, _)| [format!("{stem}.png"), format!("{stem}.svg")])
        .collect();
    want.sort();
    assert_eq!(files, want);
    for (stem, size) in expected {
        check_svg(&plots.join(format!("{stem}.svg")));
        assert_eq!(png_size(&plots.join(format!("{stem}.png"))), size, "{stem}");
    }

    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for (stem, _) in expected {
        assert!(
            report.contains(&format!("(plots/{stem}.png)")),
            "{stem} not linked"
        );
    }
    // One table per grid point without the seed and method axes: 2 distances × 2 flip rates.
    assert_eq!(report.matches("\n### ").count(), 4);
    assert!(report.contains("### flip_rate=0.2, distance=1.0"));
    // Ceilings and the bound beside the methods; mean ± std over the two seeds.
    assert!(report.contains("| *ceiling: type oracle* |"));
    assert!(report.contains("| *bound: Bayes posterior* |"));
    assert!(report.contains("| lpc-dpo codebook=4 | 2 |"));
    assert!(report.contains(" ± "));
    assert!(report.contains("## Per-type accuracy"));

    // Reporting again (which merges again) changes no byte.
    let first = snapshot(&dir);
    let out = lpc_bench(&["report", dir.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(snapshot(&dir), first);
}

#[test]
fn report_on_a_run_folder_has_tables_and_code_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("tiny.toml");
    // A tiny one-off run (the sweep test's settings without a grid).
    let text = super::sweep::tiny_scenario(
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 3\n",
        "",
    )
    .replace("[sweep]\n", "");
    std::fs::write(&scenario, text).unwrap();
    let dir = tmp.path().join("run");
    let out = lpc_bench(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lpc_bench(&["report", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No grid axis: no line figures; lpc-dpo's steering table and code PCA, one panel each.
    let plots = dir.join("plots");
    assert!(!plots.join("accuracy-vs-distance.svg").exists());
    for stem in ["steering-lpc-dpo", "codes-pca-lpc-dpo"] {
        check_svg(&plots.join(format!("{stem}.svg")));
        assert_eq!(png_size(&plots.join(format!("{stem}.png"))), layout(1, 1));
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("A single run folder"));
    assert!(report.contains("| dpo | 1 |"));
    // A run folder is not a sweep: no merged files appear.
    assert!(!dir.join("all-metrics.csv").exists());
}

#[test]
fn report_on_a_folder_without_results_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = lpc_bench(&["report", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("neither a sweep folder"), "{stderr}");
}
