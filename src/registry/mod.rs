//! The registry files: import (`cunjing registry import DIR`), export and the coverage check.
//!
//! The registry is five CSV files — stations, offices, villages, officers, assignments —
//! kept by the station staff in Excel, and optionally the villages' areas (`areas.geojson`,
//! see `areas`). [`import_dir`] checks every line and feature and writes all or nothing; [`export_dir`] writes the same format back; [`check`] lists the gaps that keep a
//! village from having a reachable officer.

mod areas;
mod check;
mod export;
mod import;

use std::fmt;
use std::path::PathBuf;

pub use areas::{AREAS_DIR, AREAS_FILE, SLIVER_M, area_files};
pub use check::{CoverageReport, check};
pub use export::export_dir;
pub use import::{FILES, RegistryFiles, import_dir, parse_dir};

/// One problem in a registry file, shown as `file:line: message`, or `file:feature N:
/// message` for a feature of an areas file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: PathBuf,
    /// 1-based line of the file (the header is line 1); 0 when the problem is the whole file
    /// or a feature.
    pub line: usize,
    /// 1-based feature of an areas file (GeoJSON); 0 for the CSV files.
    pub feature: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.feature > 0 {
            write!(f, "{}:feature {}: {}", self.file.display(), self.feature, self.message)
        } else if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The files have errors; nothing was written.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<LineError>),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub stations: usize,
    pub offices: usize,
    pub villages: usize,
    pub officers: usize,
    pub assignments: usize,
    /// Areas (features of the areas files) written.
    pub areas: usize,
    /// Open assignments that were no longer in the file and were ended today.
    pub assignments_ended: usize,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Imported {} stations, {} offices, {} villages, {} officers, {} assignments, {} areas; {} assignments ended",
            self.stations,
            self.offices,
            self.villages,
            self.officers,
            self.assignments,
            self.areas,
            self.assignments_ended
        )
    }
}
