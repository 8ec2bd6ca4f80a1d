//! `lpc-bench report DIR`: merge a sweep folder (or read a run folder), then write
//! `DIR/report.md` and the plots under `DIR/plots/` (each as SVG and PNG).
//!
//! What goes into the report is decided by [`crate::report::folder`]; drawing is
//! [`crate::plots`]. Plots of an earlier report that the data no longer supports are left in
//! place (nothing is deleted).

use crate::cli::ReportArgs;
use crate::plots;
use crate::report::folder::{self, PLOTS_DIR, REPORT_FILE, ResultFolder};
use crate::results::write_atomic;
use crate::{Error, Result};

/// Load, merge, draw every supported figure, write `report.md`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let data = ResultFolder::load(&args.dir)?;
    let figures = folder::figures(&data)?;
    let plots_dir = args.dir.join(PLOTS_DIR);
    if !figures.is_empty() {
        std::fs::create_dir_all(&plots_dir).map_err(|e| Error::io(&plots_dir, e))?;
    }
    for f in &figures {
        plots::write_figure(&f.figure, &plots_dir.join(&f.stem))?;
    }
    let report = args.dir.join(REPORT_FILE);
    write_atomic(&report, folder::markdown(&data, &figures).as_bytes())?;
    if !args.quiet {
        println!(
            "wrote {} ({} result rows, {} grid cells) and {} figures (SVG + PNG) in {}",
            report.display(),
            data.merged.rows.len(),
            data.cells.len(),
            figures.len(),
            plots_dir.display()
        );
    }
    Ok(())
}
