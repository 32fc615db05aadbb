//! Cells of the CSV files the program writes, made safe to open in a spreadsheet.
//!
//! Excel, WPS and LibreOffice take a cell that begins with `=`, `+`, `-` or `@` for a formula
//! (and a tab or carriage return can hide one), so a tip's text or a name typed by anyone
//! could run a formula on a station PC ("CSV injection"). Every CSV writer of the program goes
//! through [`write_record`], which prefixes such a cell with `'`: the spreadsheet then shows
//! the text as typed. The registry import takes the prefix off again ([`restore`]), so an
//! exported registry imports unchanged.

use std::borrow::Cow;

/// The first characters that make a spreadsheet read a cell as a formula.
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell`, with `'` in front when it begins like a formula.
pub fn inert(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(TRIGGERS) { Cow::Owned(format!("'{cell}")) } else { Cow::Borrowed(cell) }
}

/// A cell written by [`inert`] as it was before (a `'` taken off only where `inert` put it).
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(TRIGGERS) => rest,
        _ => cell,
    }
}

/// Writes one record with every cell made [`inert`].
pub fn write_record<W, I, T>(w: &mut csv::Writer<W>, record: I) -> csv::Result<()>
where
    W: std::io::Write,
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    w.write_record(record.into_iter().map(|cell| inert(cell.as_ref()).into_owned()))
}

/// A whole file: a byte-order mark (so Excel reads UTF-8), `header`, then `rows`, every
/// cell made [`inert`].
pub fn file_with_bom<R, T>(header: &[String], rows: impl IntoIterator<Item = R>) -> csv::Result<Vec<u8>>
where
    R: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        write_record(&mut w, header)?;
        for row in rows {
            write_record(&mut w, row)?;
        }
        w.flush()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_that_begins_like_a_formula_is_shown_as_text() {
        for cell in ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"] {
            assert_eq!(inert(cell), format!("'{cell}"), "{cell:?}");
            assert_eq!(restore(&inert(cell)), cell);
        }
        for cell in ["前店村", "0371-62581110", "", "'quoted", "a=b"] {
            assert_eq!(inert(cell), cell, "{cell:?} is left alone");
            assert_eq!(restore(cell), cell);
        }
    }

    #[test]
    fn a_written_record_carries_the_prefix_and_stays_one_row() {
        let mut w = csv::Writer::from_writer(vec![]);
        write_record(&mut w, ["T1", "=1+1", "有人说, \"-5\""]).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(out, "T1,'=1+1,\"有人说, \"\"-5\"\"\"\n");
    }
}
