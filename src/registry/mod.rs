//! The registry files: import (`cunjing registry import DIR`), export and the coverage check.
//!
//! The registry is five CSV files — stations, offices, villages, officers, assignments —
//! kept by the station staff in Excel. [`import_dir`] checks every line and writes all or
//! nothing; [`export_dir`] writes the same format back; [`check`] lists the gaps that keep a
//! village from having a reachable officer.

mod check;
mod export;
mod import;

use std::fmt;
use std::path::PathBuf;

pub use check::{CoverageReport, check};
pub use export::export_dir;
pub use import::{FILES, RegistryFiles, import_dir, parse_dir};

/// One problem in a registry file, shown as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: PathBuf,
    /// 1-based line of the file (the header is line 1); 0 when the problem is the whole file.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
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
    /// Open assignments that were no longer in the file and were ended today.
    pub assignments_ended: usize,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Imported {} stations, {} offices, {} villages, {} officers, {} assignments; {} assignments ended",
            self.stations, self.offices, self.villages, self.officers, self.assignments, self.assignments_ended
        )
    }
}
