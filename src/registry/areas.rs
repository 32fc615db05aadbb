//! The registry's areas (issue #24): `areas.geojson` (or every `*.geojson` in `areas/`),
//! read and checked with the CSV files and written in the same transaction.
//!
//! Each feature is one village's or grid's ground: `properties.code` (from villages.csv),
//! optional `properties.name` and `properties.datum`, a Polygon or MultiPolygon. The datum is
//! the feature's, else the collection's foreign member `"datum"`, else WGS-84. The geometry
//! is stored as written, in its own datum; the checks run in WGS-84 on a flat projection in
//! metres per station.
//!
//! Checked, every problem reported as `file:feature N: what, how to fix it`: the JSON, the
//! collection, the code (known, once), the datum, the geometry type, each ring (four
//! positions or more, closed as written: geo would close it silently), positions in China
//! and not swapped, validity (no self-intersection, `geo`'s `Validation`), and within a
//! station no overlaps and no gaps (holes in the union of its areas). Overlaps and gaps
//! narrower than [`SLIVER_M`] are taken as drawing or datum-conversion noise on a shared edge.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use geo::algorithm::Validation;
use geo::bool_ops::FillRule;
use geo::{Area, BooleanOps, Contains, Coord, InteriorPoint, LineString, MultiPolygon, OpType, Orient, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde_json::Value;

use super::LineError;
use crate::domain::Datum;
use crate::places::Local;

/// The single areas file of a registry directory.
pub const AREAS_FILE: &str = "areas.geojson";
/// The folder of areas files (every `*.geojson` in it), as an alternative or addition.
pub const AREAS_DIR: &str = "areas";

/// Overlaps and gaps narrower than this (2 · area / perimeter, metres) are not reported: a
/// GCJ-02 layer converted to WGS-84 meets its WGS-84 neighbours within millimetres, not
/// exactly.
pub const SLIVER_M: f64 = 1.0;

/// All of China lies in this box (longitude, latitude).
const CHINA_LON: (f64, f64) = (73.0, 136.0);
const CHINA_LAT: (f64, f64) = (3.0, 54.0);

/// One checked area, ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct AreaRec {
    pub code: String,
    pub datum: Datum,
    /// The feature's geometry object as GeoJSON text, in `datum`.
    pub geometry: String,
}

/// Where a feature is: the file (index into the files read) and its 1-based number.
type At = (usize, usize);

/// A feature that passed its own checks.
struct Good {
    at: At,
    code: String,
    station: String,
    /// WGS-84.
    shape: MultiPolygon<f64>,
}

/// The areas files of `dir`: `areas.geojson` and every `*.geojson` of `areas/`, by name.
pub fn area_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = dir.join(AREAS_FILE);
    if single.is_file() {
        files.push(single);
    }
    if let Ok(entries) = std::fs::read_dir(dir.join(AREAS_DIR)) {
        let mut more: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("geojson")))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

/// Reads and checks the areas of `dir`. `station_of` maps every village code of
/// villages.csv to its station's code (`None` when its office could not be resolved).
/// Problems go to `errors`, in file and feature order.
pub(crate) fn parse_areas(
    dir: &Path,
    station_of: &HashMap<&str, Option<&str>>,
    errors: &mut Vec<LineError>,
) -> Vec<AreaRec> {
    let files = area_files(dir);
    let mut problems: Vec<(At, String)> = Vec::new();
    let mut file_errors: Vec<LineError> = Vec::new();
    let mut records = Vec::new();
    let mut good: Vec<Good> = Vec::new();
    // Bounding boxes (WGS-84) of features that failed their own checks: a hole next to one
    // is that feature's problem, not a gap.
    let mut skipped: Vec<([f64; 2], [f64; 2])> = Vec::new();
    let mut first_at: HashMap<String, At> = HashMap::new();

    for (fi, path) in files.iter().enumerate() {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                file_errors.push(whole(
                    path,
                    0,
                    format!("cannot be read as UTF-8 text: {e}; save it as UTF-8 GeoJSON"),
                ));
                continue;
            }
        };
        let root: Value = match serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(&text)) {
            Ok(v) => v,
            Err(e) => {
                file_errors.push(whole(
                    path,
                    e.line(),
                    format!("is not valid JSON ({e}); correct it, or export the layer again as GeoJSON"),
                ));
                continue;
            }
        };
        let collection_datum = match root.get("datum") {
            None | Some(Value::Null) => Some(Datum::Wgs84),
            Some(Value::String(s)) => match Datum::parse(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    file_errors.push(whole(path, 0, format!("the collection's datum: {}", e.0)));
                    None
                }
            },
            Some(other) => {
                file_errors.push(whole(
                    path,
                    0,
                    format!("the collection's datum {other} is not text; write \"WGS84\", \"GCJ02\" or \"CGCS2000\""),
                ));
                None
            }
        };
        let features = match (root.get("type").and_then(Value::as_str), root.get("features")) {
            (Some("FeatureCollection"), Some(Value::Array(features))) => features,
            (Some("FeatureCollection"), _) => {
                file_errors.push(whole(path, 0, "the FeatureCollection has no \"features\" list; add one".into()));
                continue;
            }
            (kind, _) => {
                file_errors.push(whole(
                    path,
                    0,
                    format!(
                        "is a {}, not a FeatureCollection; export the layer as a GeoJSON FeatureCollection with one Feature per village",
                        kind.unwrap_or("JSON value without a \"type\"")
                    ),
                ));
                continue;
            }
        };
        let Some(collection_datum) = collection_datum else { continue };
        for (i, feature) in features.iter().enumerate() {
            let at = (fi, i + 1);
            let mut bad = |m: String| problems.push((at, m));
            let checked = check_feature(feature, collection_datum, &mut bad);
            let Some(code) = feature.pointer("/properties/code").and_then(code_text) else {
                bad("has no properties.code; add the code of its village or grid from villages.csv".into());
                skipped.extend(raw_box(feature));
                continue;
            };
            let mut ok = checked.is_some();
            let station = match station_of.get(code.as_str()) {
                None => {
                    bad(format!("code {code:?} is not in villages.csv; add the village there or correct the code"));
                    ok = false;
                    None
                }
                Some(s) => *s,
            };
            if let Some(prev) = first_at.get(&code) {
                bad(format!(
                    "code {code:?} already has an area ({}); a village has one area: merge the two into one MultiPolygon",
                    name_at(&files, *prev, at)
                ));
                ok = false;
            } else {
                first_at.insert(code.clone(), at);
            }
            let Some(c) = checked.filter(|_| ok) else {
                skipped.extend(raw_box(feature));
                continue;
            };
            records.push(AreaRec { code: code.clone(), datum: c.datum, geometry: c.geometry });
            if let Some(station) = station {
                good.push(Good { at, code, station: station.to_string(), shape: c.shape });
            }
        }
    }

    problems.extend(cross_checks(&files, good, &skipped));
    problems.sort_by_key(|a| a.0);
    errors.extend(file_errors);
    errors.extend(problems.into_iter().map(|((fi, n), message)| LineError {
        file: files[fi].clone(),
        line: 0,
        feature: n,
        message,
    }));
    records
}

/// The bounding box of every `[x, y]` in a feature's geometry as written, grown by 0.01°
/// (more than GCJ-02's shift), for a feature that failed its checks.
fn raw_box(feature: &Value) -> Option<([f64; 2], [f64; 2])> {
    fn walk(v: &Value, lo: &mut [f64; 2], hi: &mut [f64; 2]) {
        let Some(list) = v.as_array() else { return };
        if let [Value::Number(x), Value::Number(y), ..] = list.as_slice()
            && let (Some(x), Some(y)) = (x.as_f64(), y.as_f64())
        {
            *lo = [lo[0].min(x), lo[1].min(y)];
            *hi = [hi[0].max(x), hi[1].max(y)];
            return;
        }
        list.iter().for_each(|item| walk(item, lo, hi));
    }
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    walk(feature.pointer("/geometry/coordinates")?, &mut lo, &mut hi);
    (lo[0] <= hi[0]).then_some(([lo[0] - 0.01, lo[1] - 0.01], [hi[0] + 0.01, hi[1] + 0.01]))
}

fn whole(path: &Path, line: usize, message: String) -> LineError {
    LineError { file: path.to_path_buf(), line, feature: 0, message }
}

/// A code written as text or as a number (a spreadsheet may have made it one).
fn code_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// "feature 7" in the same file, "feature 7 of north.geojson" in another.
fn name_at(files: &[PathBuf], other: At, here: At) -> String {
    if other.0 == here.0 {
        format!("feature {}", other.1)
    } else {
        let name = files[other.0].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("feature {} of {name}", other.1)
    }
}

/// A feature after its own checks.
struct Checked {
    datum: Datum,
    geometry: String,
    shape: MultiPolygon<f64>,
}

/// The checks of one feature by itself; `None` (with the problems reported) if it fails.
fn check_feature(feature: &Value, collection_datum: Datum, bad: &mut impl FnMut(String)) -> Option<Checked> {
    if feature.get("type").and_then(Value::as_str) != Some("Feature") {
        bad("is not a GeoJSON Feature (\"type\": \"Feature\"); each element of \"features\" is one village's Feature"
            .into());
        return None;
    }
    let datum = match feature.pointer("/properties/datum") {
        None | Some(Value::Null) => Some(collection_datum),
        Some(Value::String(s)) => Datum::parse(s).map_err(|e| bad(e.0)).ok(),
        Some(other) => {
            bad(format!("datum {other} is not text; write \"WGS84\", \"GCJ02\" or \"CGCS2000\""));
            None
        }
    };
    let geometry = match feature.get("geometry") {
        None | Some(Value::Null) => {
            bad("has no geometry; draw the village's boundary as a Polygon".into());
            return None;
        }
        Some(g) => g,
    };
    let kind = geometry.get("type").and_then(Value::as_str).unwrap_or("geometry without a \"type\"");
    let coordinates = geometry.get("coordinates").unwrap_or(&Value::Null);
    let polygons: Vec<&Value> = match kind {
        "Polygon" => vec![coordinates],
        "MultiPolygon" => match coordinates.as_array() {
            Some(list) if !list.is_empty() => list.iter().collect(),
            _ => {
                bad("the MultiPolygon has no polygons; give its \"coordinates\" as a list of polygons".into());
                return None;
            }
        },
        other => {
            bad(format!(
                "the geometry is a {other}, not a Polygon or MultiPolygon; draw the village's boundary as a closed polygon"
            ));
            return None;
        }
    };
    let datum = datum?;
    let multi = kind == "MultiPolygon";
    let mut shape = Vec::with_capacity(polygons.len());
    let mut ok = true;
    for (pi, polygon) in polygons.iter().enumerate() {
        let which = |ri: usize| -> String {
            let ring = if ri == 0 { "the outer ring".to_string() } else { format!("hole {ri}") };
            if multi { format!("{ring} of polygon {}", pi + 1) } else { ring }
        };
        let Some(rings) = polygon.as_array().filter(|r| !r.is_empty()) else {
            bad(format!(
                "{} has no rings; give its \"coordinates\" as a list of rings of [longitude, latitude]",
                if multi { format!("polygon {}", pi + 1) } else { "the Polygon".into() }
            ));
            ok = false;
            continue;
        };
        let mut geo_rings = Vec::with_capacity(rings.len());
        for (ri, ring) in rings.iter().enumerate() {
            match check_ring(ring, datum, &which(ri)) {
                Ok(r) => geo_rings.push(r),
                Err(m) => {
                    bad(m);
                    ok = false;
                }
            }
        }
        if ok {
            let mut it = geo_rings.into_iter();
            let outer = it.next().unwrap_or_else(|| LineString::new(vec![]));
            shape.push(Polygon::new(outer, it.collect()));
        }
    }
    if !ok {
        return None;
    }
    let shape = MultiPolygon(shape);
    let problems = shape.validation_errors();
    if !problems.is_empty() {
        for p in problems {
            bad(invalid_message(&p, &shape, multi));
        }
        return None;
    }
    Some(Checked { datum, geometry: geometry.to_string(), shape })
}

/// Checks one ring as written and converts it to WGS-84.
fn check_ring(ring: &Value, datum: Datum, which: &str) -> Result<LineString<f64>, String> {
    let Some(positions) = ring.as_array() else {
        return Err(format!("{which} is not a list of positions; write it as [[longitude, latitude], …]"));
    };
    let mut coords = Vec::with_capacity(positions.len());
    for (k, p) in positions.iter().enumerate() {
        let xy = p.as_array().filter(|a| a.len() >= 2).and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
        let Some((x, y)) = xy else {
            return Err(format!("position {} of {which} is {p}, not [longitude, latitude]; correct it", k + 1));
        };
        let in_lon = |v: f64| (CHINA_LON.0..=CHINA_LON.1).contains(&v);
        let in_lat = |v: f64| (CHINA_LAT.0..=CHINA_LAT.1).contains(&v);
        if !(in_lon(x) && in_lat(y)) {
            return Err(if in_lat(x) && in_lon(y) {
                format!(
                    "position {} of {which} is [{x}, {y}]: latitude and longitude look swapped; GeoJSON writes [longitude, latitude], swap them",
                    k + 1
                )
            } else {
                format!(
                    "position {} of {which} is [{x}, {y}], outside China (longitude 73–136, latitude 3–54); correct the coordinates or the layer's projection (degrees, not metres)",
                    k + 1
                )
            });
        }
        coords.push((x, y));
    }
    if coords.len() < 4 {
        return Err(format!(
            "{which} has {} positions; a ring needs at least 4 (three corners and the first again at the end)",
            coords.len()
        ));
    }
    if coords.first() != coords.last() {
        return Err(format!(
            "{which} is not closed: its last position [{}, {}] is not its first [{}, {}]; repeat the first position at the end",
            coords[coords.len() - 1].0,
            coords[coords.len() - 1].1,
            coords[0].0,
            coords[0].1
        ));
    }
    Ok(LineString::new(
        coords
            .into_iter()
            .map(|(x, y)| {
                let (x, y) = datum.to_wgs84(x, y);
                Coord { x, y }
            })
            .collect(),
    ))
}

/// A validation problem in words, with where a ring crosses itself when it does.
fn invalid_message(
    p: &geo::algorithm::validation::InvalidMultiPolygon,
    shape: &MultiPolygon<f64>,
    multi: bool,
) -> String {
    use geo::algorithm::validation::{InvalidMultiPolygon as M, InvalidPolygon as P, RingRole};
    let ring_name = |pi: usize, role: &RingRole| {
        let ring = match role {
            RingRole::Exterior => "the outer ring".to_string(),
            RingRole::Interior(i) => format!("hole {}", i + 1),
        };
        if multi { format!("{ring} of polygon {}", pi + 1) } else { ring }
    };
    match p {
        M::InvalidPolygon(idx, P::SelfIntersection(role)) => {
            let polygon = &shape.0[idx.0];
            let ring = match role {
                RingRole::Exterior => Some(polygon.exterior()),
                RingRole::Interior(i) => polygon.interiors().get(*i),
            };
            let at = ring
                .and_then(crossing)
                .map(|c| format!(" near ({:.6}, {:.6}) (latitude, longitude)", c.y, c.x))
                .unwrap_or_default();
            format!(
                "{} crosses itself{at}; redraw the boundary so that it does not cross or touch itself",
                ring_name(idx.0, role)
            )
        }
        M::InvalidPolygon(idx, P::TooFewPointsInRing(role)) => {
            format!(
                "{} has fewer than 3 distinct corners; draw the boundary with at least three corners",
                ring_name(idx.0, role)
            )
        }
        M::InvalidPolygon(idx, P::InteriorRingNotContainedInExteriorRing(role)) => {
            format!("{} is not inside the outer ring; a hole must lie within its polygon", ring_name(idx.0, role))
        }
        M::InvalidPolygon(idx, other) => {
            format!("{}{other}; redraw it", if multi { format!("polygon {}: ", idx.0 + 1) } else { String::new() })
        }
        M::ElementsOverlaps(a, b) | M::ElementsTouchOnALine(a, b) => format!(
            "polygons {} and {} of the MultiPolygon overlap or share an edge; merge them into one polygon",
            a.0 + 1,
            b.0 + 1
        ),
    }
}

/// Where a ring first crosses itself (two non-adjacent edges that cross), if it does.
fn crossing(ring: &LineString<f64>) -> Option<Coord<f64>> {
    let segments: Vec<geo::Line<f64>> = ring.lines().collect();
    let n = segments.len();
    for i in 0..n {
        for j in i + 2..n {
            if i == 0 && j == n - 1 {
                continue;
            }
            if let Some(geo::LineIntersection::SinglePoint { intersection, .. }) =
                geo::line_intersection::line_intersection(segments[i], segments[j])
            {
                return Some(intersection);
            }
        }
    }
    None
}

fn perimeter(p: &Polygon<f64>) -> f64 {
    std::iter::once(p.exterior())
        .chain(p.interiors())
        .flat_map(|r| r.lines())
        .map(|l| (l.dx() * l.dx() + l.dy() * l.dy()).sqrt())
        .sum()
}

/// Whether a piece (in metres) is wider than a sliver.
fn substantial(p: &Polygon<f64>) -> bool {
    let a = p.unsigned_area();
    let per = perimeter(p);
    per > 0.0 && 2.0 * a / per >= SLIVER_M
}

/// Bounding box of a ring.
fn ring_box(r: &LineString<f64>) -> ([f64; 2], [f64; 2]) {
    r.0.iter().fold(([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]), |(lo, hi), c| {
        ([lo[0].min(c.x), lo[1].min(c.y)], [hi[0].max(c.x), hi[1].max(c.y)])
    })
}

fn boxes_touch(a: ([f64; 2], [f64; 2]), b: ([f64; 2], [f64; 2])) -> bool {
    a.0[0] <= b.1[0] && b.0[0] <= a.1[0] && a.0[1] <= b.1[1] && b.0[1] <= a.1[1]
}

/// "1,234"
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Distance (metres) from `c` to the boundary of `shape` (both in metres).
fn to_boundary(shape: &MultiPolygon<f64>, c: Coord<f64>) -> f64 {
    shape
        .0
        .iter()
        .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
        .flat_map(|r| r.lines())
        .map(|l| {
            let (dx, dy) = (l.dx(), l.dy());
            let len2 = dx * dx + dy * dy;
            let t = if len2 == 0.0 {
                0.0
            } else {
                (((c.x - l.start.x) * dx + (c.y - l.start.y) * dy) / len2).clamp(0.0, 1.0)
            };
            let (px, py) = (l.start.x + t * dx - c.x, l.start.y + t * dy - c.y);
            (px * px + py * py).sqrt()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Overlaps and gaps between the good features of each station, stations checked in
/// parallel.
fn cross_checks(files: &[PathBuf], good: Vec<Good>, skipped: &[([f64; 2], [f64; 2])]) -> Vec<(At, String)> {
    let mut by_station: HashMap<String, Vec<Good>> = HashMap::new();
    for g in good {
        by_station.entry(g.station.clone()).or_default().push(g);
    }
    let mut stations: Vec<(String, Vec<Good>)> = by_station.into_iter().collect();
    stations.sort_by(|a, b| a.0.cmp(&b.0));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(stations.len().max(1));
    let chunk = stations.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = stations
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .flat_map(|(code, areas)| station_checks(files, code, areas, skipped))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("an areas check panicked")).collect()
    })
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The overlaps and gaps of one station's areas.
fn station_checks(
    files: &[PathBuf],
    station: &str,
    areas: &[Good],
    skipped: &[([f64; 2], [f64; 2])],
) -> Vec<(At, String)> {
    let mut out = Vec::new();
    let Some((lo, hi)) = areas
        .iter()
        .filter_map(|a| crate::places::bounds(&a.shape))
        .reduce(|a, b| ([a.0[0].min(b.0[0]), a.0[1].min(b.0[1])], [a.1[0].max(b.1[0]), a.1[1].max(b.1[1])]))
    else {
        return out;
    };
    let local = Local::at((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0);
    let shapes: Vec<MultiPolygon<f64>> =
        areas.iter().map(|a| local.shape(&a.shape).orient(geo::orient::Direction::Default)).collect();
    let boxes: Vec<([f64; 2], [f64; 2])> =
        shapes.iter().map(|s| crate::places::bounds(s).unwrap_or(([0.0; 2], [0.0; 2]))).collect();
    let tree: RTree<Entry> = RTree::bulk_load(
        boxes.iter().enumerate().map(|(i, (a, b))| GeomWithData::new(Rectangle::from_corners(*a, *b), i)).collect(),
    );
    let all = MultiPolygon(shapes.iter().flat_map(|s| s.0.iter().cloned()).collect());
    let none = MultiPolygon::<f64>(vec![]);
    // Covered at least once (non-zero winding), and an odd number of times: the difference
    // is where areas overlap.
    let cover = all.boolean_op_with_fill_rule(&none, OpType::Union, FillRule::NonZero);
    let odd = all.boolean_op_with_fill_rule(&none, OpType::Union, FillRule::EvenOdd);
    let overlaps = cover.difference(&odd);
    let label = |i: usize, here: At| format!("{} ({})", name_at(files, areas[i].at, here), areas[i].code);

    let mut reported: HashSet<(usize, usize)> = HashSet::new();
    for piece in overlaps.0.iter().filter(|p| substantial(p)) {
        let Some(point) = piece.interior_point() else { continue };
        let mut holders: Vec<usize> = tree
            .locate_all_at_point(&[point.x(), point.y()])
            .map(|e| e.data)
            .filter(|i| shapes[*i].contains(&point))
            .collect();
        holders.sort_by_key(|i| areas[*i].at);
        let [a, b, ..] = holders[..] else { continue };
        if !reported.insert((a, b)) {
            continue;
        }
        // The whole overlap of the pair, however many pieces.
        let both = shapes[a].intersection(&shapes[b]);
        let size: f64 = both.0.iter().filter(|p| substantial(p)).map(|p| p.unsigned_area()).sum();
        let (lat, lon) = local.lat_lon(point.0);
        let here = areas[a].at;
        out.push((
            here,
            format!(
                "the area of {} overlaps {} by {} m² around ({lat:.6}, {lon:.6}) (latitude, longitude); move the shared boundary so that each place lies in one area",
                areas[a].code,
                label(b, here),
                thousands(size.max(piece.unsigned_area()))
            ),
        ));
    }

    for hole in cover.0.iter().flat_map(|p| p.interiors()) {
        let gap = Polygon::new(hole.clone(), vec![]);
        if !substantial(&gap) {
            continue;
        }
        let (hlo, hhi) = ring_box(hole);
        let (a_lat, a_lon) = local.lat_lon(Coord { x: hlo[0], y: hlo[1] });
        let (b_lat, b_lon) = local.lat_lon(Coord { x: hhi[0], y: hhi[1] });
        if skipped.iter().any(|s| boxes_touch(*s, ([a_lon, a_lat], [b_lon, b_lat]))) {
            continue;
        }
        let envelope = AABB::from_corners([hlo[0] - 1.0, hlo[1] - 1.0], [hhi[0] + 1.0, hhi[1] + 1.0]);
        let mut around: Vec<usize> = tree
            .locate_in_envelope_intersecting(&envelope)
            .map(|e| e.data)
            .filter(|i| hole.0.iter().any(|c| to_boundary(&shapes[*i], *c) < SLIVER_M))
            .collect();
        around.sort_by_key(|i| areas[*i].at);
        let Some(first) = around.first().copied() else { continue };
        let here = areas[first].at;
        let point = gap.interior_point().map_or(hole.0[0], |p| p.0);
        let (lat, lon) = local.lat_lon(point);
        let names: Vec<String> = around.iter().map(|i| label(*i, here)).collect();
        out.push((
            here,
            format!(
                "a gap of {} m² around ({lat:.6}, {lon:.6}) (latitude, longitude) inside station {station} is in no area (it borders {}); extend a neighbouring area over it",
                thousands(gap.unsigned_area()),
                names.join(", ")
            ),
        ));
    }
    out
}

/// Writes every stored area as one FeatureCollection, each feature with its own datum, in
/// the order of the village codes.
pub(crate) fn feature_collection(rows: &[(String, String, Datum, String)]) -> anyhow::Result<String> {
    let mut out = String::from("{\"type\": \"FeatureCollection\", \"features\": [\n");
    for (i, (code, name, datum, geometry)) in rows.iter().enumerate() {
        let geometry: Value = serde_json::from_str(geometry)?;
        let feature = serde_json::json!({
            "type": "Feature",
            "properties": {"code": code, "name": name, "datum": datum.to_string()},
            "geometry": geometry,
        });
        out.push_str(&feature.to_string());
        out.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    out.push_str("]}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str, codes: &[(&str, &str)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(AREAS_FILE), text).unwrap();
        let station_of: HashMap<&str, Option<&str>> = codes.iter().map(|(c, s)| (*c, Some(*s))).collect();
        let mut errors = Vec::new();
        parse_areas(dir.path(), &station_of, &mut errors);
        errors.iter().map(|e| e.to_string().replace(&format!("{}/", dir.path().display()), "")).collect()
    }

    fn square(code: &str, lon: f64, lat: f64, side: f64) -> String {
        format!(
            r#"{{"type": "Feature", "properties": {{"code": "{code}"}}, "geometry": {{"type": "Polygon", "coordinates": [[[{lon}, {lat}], [{}, {lat}], [{}, {}], [{lon}, {}], [{lon}, {lat}]]]}}}}"#,
            lon + side,
            lon + side,
            lat + side,
            lat + side
        )
    }

    fn collection(features: &[String]) -> String {
        format!("{{\"type\": \"FeatureCollection\", \"features\": [\n{}\n]}}", features.join(",\n"))
    }

    #[test]
    fn the_example_areas_pass_every_check() {
        let dir = Path::new("bot-config/example");
        let files = super::super::parse_dir(dir).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(files.areas.len(), 12);
        assert!(files.areas.iter().all(|a| a.datum == Datum::Wgs84));
    }

    #[test]
    fn a_broken_json_file_is_reported_with_its_line() {
        let m = errors_of("{\"type\": \"FeatureCollection\",\n \"features\": [,]}", &[]);
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(m[0].starts_with("areas.geojson:2: is not valid JSON"), "{m:#?}");
    }

    #[test]
    fn a_single_feature_instead_of_a_collection_is_refused() {
        let m = errors_of(&square("A", 113.7, 34.4, 0.01), &[("A", "S")]);
        assert_eq!(
            m,
            [
                "areas.geojson: is a Feature, not a FeatureCollection; export the layer as a GeoJSON FeatureCollection with one Feature per village"
            ]
        );
    }

    #[test]
    fn swapped_coordinates_a_missing_geometry_and_a_duplicate_code_name_their_feature() {
        let swapped = square("B", 34.4, 113.7, 0.01);
        let text = collection(&[
            square("A", 113.7, 34.4, 0.01),
            swapped,
            r#"{"type": "Feature", "properties": {"code": "C"}, "geometry": null}"#.into(),
            square("A", 113.8, 34.4, 0.01),
            r#"{"type": "Feature", "properties": {"code": "C", "datum": "BD09"}, "geometry": {"type": "Point", "coordinates": [113.7, 34.4]}}"#.into(),
        ]);
        let m = errors_of(&text, &[("A", "S"), ("B", "S"), ("C", "S")]);
        assert!(m[0].starts_with("areas.geojson:feature 2: position 1 of the outer ring is [34.4, 113.7]: latitude and longitude look swapped"), "{m:#?}");
        assert!(m[1].starts_with("areas.geojson:feature 3: has no geometry"), "{m:#?}");
        assert!(m[2].starts_with("areas.geojson:feature 4: code \"A\" already has an area (feature 1)"), "{m:#?}");
        assert!(m[3].starts_with("areas.geojson:feature 5: unknown datum \"BD09\""), "{m:#?}");
        assert!(m[4].starts_with("areas.geojson:feature 5: the geometry is a Point, not a Polygon"), "{m:#?}");
        assert!(m[5].starts_with("areas.geojson:feature 5: code \"C\" already has an area (feature 3)"), "{m:#?}");
        assert_eq!(m.len(), 6, "{m:#?}");
    }

    #[test]
    fn two_squares_that_overlap_in_one_station_are_named_with_the_size() {
        // 0.01° ≈ 920 m × 1,106 m; the second starts 0.001° (≈ 92 m) inside the first.
        let text = collection(&[square("A", 113.7, 34.4, 0.01), square("B", 113.709, 34.4, 0.01)]);
        let m = errors_of(&text, &[("A", "S"), ("B", "S")]);
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(m[0].starts_with("areas.geojson:feature 1: the area of A overlaps feature 2 (B) by 101,"), "{m:#?}");
        // In two stations it is not this check's business.
        assert!(errors_of(&text, &[("A", "S"), ("B", "T")]).is_empty());
    }
}
