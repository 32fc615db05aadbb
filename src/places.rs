//! Places (issue #24): the ground each village or urban grid covers, and the questions asked
//! of it: which area holds a point, which areas lie near it, which areas a circle touches.
//!
//! Areas come from the registry's `areas.geojson` (`registry::areas` reads and checks it)
//! and are kept in the `areas` table as imported, in their own datum. In memory they are
//! indexed in WGS-84: every coordinate of a GCJ-02 layer is converted once when the index is
//! built, and a point is converted before it is looked up. The index is an R-tree of the
//! areas' bounding boxes (`rstar`); a point is tested against the few polygons whose box
//! holds it (`geo`). Distances are in metres on a local flat projection, which at village
//! scale (a few kilometres) is within a fraction of a percent of the geodesic.
//!
//! A point whose datum is not known (a Telegram location: device GPS is WGS-84, but a point
//! picked on a Chinese phone's map is GCJ-02) is looked up both ways; when the two readings,
//! or a point within the confirmation margin of a boundary, could belong to two areas, the
//! answer is [`Located::Ambiguous`] and the resident is asked.

use std::collections::HashMap;

use geo::{Contains, Coord, LineString, MultiPolygon, Point, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

pub use crate::domain::Datum;

/// Metres per degree of latitude (mean).
const M_PER_DEG_LAT: f64 = 110_574.0;
/// Metres per degree of longitude at the equator.
const M_PER_DEG_LON: f64 = 111_320.0;

impl Datum {
    /// `(lon, lat)` in this datum → WGS-84. Outside mainland China GCJ-02 equals WGS-84.
    pub fn to_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Datum::Wgs84 | Datum::Cgcs2000 => (lon, lat),
            Datum::Gcj02 => coordtransform::gcj02_to_wgs84(lon, lat),
        }
    }

    /// WGS-84 `(lon, lat)` → this datum.
    pub fn from_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Datum::Wgs84 | Datum::Cgcs2000 => (lon, lat),
            Datum::Gcj02 => coordtransform::wgs84_to_gcj02(lon, lat),
        }
    }
}

/// A point as it arrived: WGS-84/GCJ-02 when the platform says which, `None` when not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spot {
    pub lat: f64,
    pub lon: f64,
    pub datum: Option<Datum>,
}

impl Spot {
    /// The WGS-84 readings of this point: one when its datum is known, two when it is not
    /// (as sent, and as if it were GCJ-02), the likelier first.
    pub fn readings(&self) -> Vec<(f64, f64)> {
        match self.datum {
            Some(d) => vec![d.to_wgs84(self.lon, self.lat)],
            None => {
                let as_gcj = Datum::Gcj02.to_wgs84(self.lon, self.lat);
                if as_gcj == (self.lon, self.lat) {
                    vec![(self.lon, self.lat)]
                } else {
                    vec![(self.lon, self.lat), as_gcj]
                }
            }
        }
    }
}

/// One village's or grid's ground, in WGS-84 (x = longitude, y = latitude).
#[derive(Debug, Clone)]
pub struct Area {
    pub village_id: i64,
    pub code: Box<str>,
    pub station_id: i64,
    pub shape: MultiPolygon<f64>,
}

/// What the index says about a point.
#[derive(Debug)]
pub enum Located<'a> {
    /// The point is in this area and no other area is within the margin.
    Inside(&'a Area),
    /// The point could be in either: the likelier first (the area that holds the point as
    /// read, or else the nearest). Two areas at most; one when the point lies just outside
    /// the only area near it.
    Ambiguous(Vec<&'a Area>),
    /// In no area and near none; the nearest area, if any area is indexed (its station's
    /// duty line is the answer).
    Outside { nearest: Option<&'a Area> },
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// The areas of a registry, indexed for point and circle queries.
pub struct AreaIndex {
    areas: Vec<Area>,
    tree: RTree<Entry>,
    by_village: HashMap<i64, u32>,
}

impl std::fmt::Debug for AreaIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AreaIndex").field("areas", &self.areas.len()).finish()
    }
}

impl Default for AreaIndex {
    fn default() -> Self {
        AreaIndex::build(Vec::new())
    }
}

/// The bounding box of a shape, `None` for an empty one.
pub fn bounds(shape: &MultiPolygon<f64>) -> Option<([f64; 2], [f64; 2])> {
    let mut min = [f64::INFINITY; 2];
    let mut max = [f64::NEG_INFINITY; 2];
    for p in &shape.0 {
        for c in &p.exterior().0 {
            min = [min[0].min(c.x), min[1].min(c.y)];
            max = [max[0].max(c.x), max[1].max(c.y)];
        }
    }
    (min[0] <= max[0]).then_some((min, max))
}

/// A flat projection in metres around one point (equirectangular), good for distances of a
/// few kilometres and for the shapes of one station: x east, y north.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    lon0: f64,
    lat0: f64,
    kx: f64,
}

impl Local {
    pub fn at(lon0: f64, lat0: f64) -> Local {
        Local { lon0, lat0, kx: M_PER_DEG_LON * lat0.to_radians().cos() }
    }

    fn xy(&self, c: Coord<f64>) -> (f64, f64) {
        ((c.x - self.lon0) * self.kx, (c.y - self.lat0) * M_PER_DEG_LAT)
    }

    /// A WGS-84 coordinate (x = lon, y = lat) in metres from the origin.
    pub fn to_m(self, c: Coord<f64>) -> Coord<f64> {
        let (x, y) = self.xy(c);
        Coord { x, y }
    }

    /// `(lat, lon)` of a point given in metres.
    pub fn lat_lon(self, c: Coord<f64>) -> (f64, f64) {
        (self.lat0 + c.y / M_PER_DEG_LAT, self.lon0 + c.x / self.kx)
    }

    /// A shape in metres.
    pub fn shape(self, shape: &MultiPolygon<f64>) -> MultiPolygon<f64> {
        let ring = |r: &LineString<f64>| LineString::new(r.0.iter().map(|c| self.to_m(*c)).collect());
        MultiPolygon(
            shape
                .0
                .iter()
                .map(|p| Polygon::new(ring(p.exterior()), p.interiors().iter().map(ring).collect()))
                .collect(),
        )
    }
}

/// Distance in metres from the origin of `local` to the segment a–b.
fn to_segment(local: &Local, a: Coord<f64>, b: Coord<f64>) -> f64 {
    let (ax, ay) = local.xy(a);
    let (bx, by) = local.xy(b);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0) };
    let (px, py) = (ax + t * dx, ay + t * dy);
    (px * px + py * py).sqrt()
}

fn ring_distance(local: &Local, ring: &LineString<f64>) -> f64 {
    ring.lines().map(|l| to_segment(local, l.start, l.end)).fold(f64::INFINITY, f64::min)
}

/// Distance in metres from `(lon, lat)` to the boundary of `shape` (whether the point is
/// inside or outside).
pub fn distance_to_boundary_m(shape: &MultiPolygon<f64>, lon: f64, lat: f64) -> f64 {
    let local = Local::at(lon, lat);
    shape
        .0
        .iter()
        .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
        .map(|r| ring_distance(&local, r))
        .fold(f64::INFINITY, f64::min)
}

/// Distance in metres from `(lon, lat)` to `shape`: 0 inside it.
pub fn distance_m(shape: &MultiPolygon<f64>, lon: f64, lat: f64) -> f64 {
    if shape.contains(&Point::new(lon, lat)) { 0.0 } else { distance_to_boundary_m(shape, lon, lat) }
}

/// Within this distance two areas count as touching: coordinates written to 6 decimals
/// (10 cm) and two digitisations of one boundary may leave hairline gaps.
pub const TOUCH_M: f64 = 1.0;

/// Whether two shapes share at least a point (DE-9IM *intersects*: overlapping, sharing an
/// edge, or meeting only at a corner), allowing [`TOUCH_M`] for hairline gaps.
pub fn touch(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> bool {
    use geo::Intersects;
    if a.intersects(b) {
        return true;
    }
    let near = |from: &MultiPolygon<f64>, to: &MultiPolygon<f64>| {
        from.0
            .iter()
            .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
            .flat_map(|r| r.0.iter())
            .any(|c| distance_m(to, c.x, c.y) <= TOUCH_M)
    };
    // Two shapes apart are closest at a vertex of one of them.
    near(a, b) || near(b, a)
}

/// Degrees of latitude and longitude that `metres` spans at latitude `lat`.
fn degrees(metres: f64, lat: f64) -> (f64, f64) {
    let dlat = metres / M_PER_DEG_LAT;
    let dlon = metres / (M_PER_DEG_LON * lat.to_radians().cos().max(0.01));
    (dlon, dlat)
}

impl AreaIndex {
    /// Indexes `areas` (empty shapes are left out).
    pub fn build(areas: Vec<Area>) -> AreaIndex {
        let areas: Vec<Area> = areas.into_iter().filter(|a| bounds(&a.shape).is_some()).collect();
        let entries: Vec<Entry> = areas
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let (min, max) = bounds(&a.shape)?;
                Some(GeomWithData::new(Rectangle::from_corners(min, max), i as u32))
            })
            .collect();
        let by_village = areas.iter().enumerate().map(|(i, a)| (a.village_id, i as u32)).collect();
        AreaIndex { tree: RTree::bulk_load(entries), areas, by_village }
    }

    pub fn len(&self) -> usize {
        self.areas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    pub fn areas(&self) -> &[Area] {
        &self.areas
    }

    /// The area of a village, if it has one.
    pub fn of_village(&self, village_id: i64) -> Option<&Area> {
        self.by_village.get(&village_id).map(|i| &self.areas[*i as usize])
    }

    /// The area holding the WGS-84 point `(lon, lat)`, if any.
    pub fn containing(&self, lon: f64, lat: f64) -> Option<&Area> {
        let p = Point::new(lon, lat);
        self.tree.locate_all_at_point(&[lon, lat]).map(|e| &self.areas[e.data as usize]).find(|a| a.shape.contains(&p))
    }

    /// Areas within `metres` of the WGS-84 point, nearest first, with their distances (0
    /// for the area that holds it).
    pub fn within(&self, lon: f64, lat: f64, metres: f64) -> Vec<(&Area, f64)> {
        let (dlon, dlat) = degrees(metres, lat);
        let envelope = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        let mut found: Vec<(&Area, f64)> = self
            .tree
            .locate_in_envelope_intersecting(&envelope)
            .map(|e| &self.areas[e.data as usize])
            .map(|a| (a, distance_m(&a.shape, lon, lat)))
            .filter(|(_, d)| *d <= metres)
            .collect();
        found.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.code.cmp(&b.0.code)));
        found
    }

    /// The nearest area to the WGS-84 point, however far.
    pub fn nearest(&self, lon: f64, lat: f64) -> Option<&Area> {
        // Widen the search until something is found: boxes first, then true distances.
        let mut metres = 2_000.0;
        while metres < 5_000_000.0 {
            if let Some((a, _)) = self.within(lon, lat, metres).into_iter().next() {
                return Some(a);
            }
            metres *= 4.0;
        }
        None
    }

    /// Where `spot` belongs, asking (`Ambiguous`) when another area lies within `margin_m`
    /// of it or when its two readings (datum unknown) fall in different areas.
    pub fn locate(&self, spot: &Spot, margin_m: f64) -> Located<'_> {
        let readings = spot.readings();
        // Candidates: the areas within the margin of the point as read, and the area that
        // holds its other reading (datum unknown: as if GCJ-02). The margin is there for the
        // datum's shift in the first place (up to ~700 m), so it is not added twice.
        let mut best: Vec<(&Area, f64, usize)> = Vec::new();
        for (r, (lon, lat)) in readings.iter().enumerate() {
            let found = if r == 0 {
                self.within(*lon, *lat, margin_m)
            } else {
                self.containing(*lon, *lat).map(|a| (a, 0.0)).into_iter().collect()
            };
            for (area, d) in found {
                match best.iter_mut().find(|(a, _, _)| a.village_id == area.village_id) {
                    Some(entry) if d < entry.1 => *entry = (area, d, r),
                    Some(_) => {}
                    None => best.push((area, d, r)),
                }
            }
        }
        best.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)).then(a.0.code.cmp(&b.0.code)));
        match best.as_slice() {
            [] => {
                let (lon, lat) = readings[0];
                Located::Outside { nearest: self.nearest(lon, lat) }
            }
            [(only, d, _)] if *d == 0.0 => Located::Inside(only),
            [(only, _, _)] => Located::Ambiguous(vec![only]),
            [(a, _, _), (b, _, _), ..] => Located::Ambiguous(vec![a, b]),
        }
    }

    /// Areas that come within `radius_m` of the WGS-84 point, nearest first.
    pub fn near(&self, lon: f64, lat: f64, radius_m: f64) -> Vec<&Area> {
        self.within(lon, lat, radius_m).into_iter().map(|(a, _)| a).collect()
    }

    /// Areas whose bounding boxes touch the box of `area` grown by `metres` (the
    /// neighbours a map around it shows), `area` itself left out.
    pub fn neighbours(&self, area: &Area, metres: f64) -> Vec<&Area> {
        let Some((min, max)) = bounds(&area.shape) else { return vec![] };
        let (dlon, dlat) = degrees(metres, (min[1] + max[1]) / 2.0);
        let envelope = AABB::from_corners([min[0] - dlon, min[1] - dlat], [max[0] + dlon, max[1] + dlat]);
        let mut found: Vec<&Area> = self
            .tree
            .locate_in_envelope_intersecting(&envelope)
            .map(|e| &self.areas[e.data as usize])
            .filter(|a| a.village_id != area.village_id)
            .collect();
        found.sort_by(|a, b| a.code.cmp(&b.code));
        found
    }

    /// The area of `village_id` and every area that [`touch`]es it (this village and those
    /// around it: the `area:CODE` broadcast target), `None` when it has no area.
    pub fn with_neighbours(&self, village_id: i64) -> Option<Vec<&Area>> {
        let area = self.of_village(village_id)?;
        let mut out = vec![area];
        out.extend(self.neighbours(area, TOUCH_M * 2.0).into_iter().filter(|n| touch(&area.shape, &n.shape)));
        Some(out)
    }

    /// Bytes the index holds on the heap (for BENCHMARKS.md): the shapes' coordinates and
    /// vectors, the tree's entries, the village map.
    pub fn heap_bytes(&self) -> usize {
        let coord = std::mem::size_of::<Coord<f64>>();
        let ring = |r: &LineString<f64>| r.0.capacity() * coord;
        let shapes: usize = self
            .areas
            .iter()
            .map(|a| {
                a.code.len()
                    + a.shape.0.capacity() * std::mem::size_of::<Polygon<f64>>()
                    + a.shape
                        .0
                        .iter()
                        .map(|p| {
                            ring(p.exterior())
                                + p.interiors().iter().map(ring).sum::<usize>()
                                + std::mem::size_of_val(p.interiors())
                        })
                        .sum::<usize>()
            })
            .sum();
        let areas = self.areas.capacity() * std::mem::size_of::<Area>();
        // An R-tree node per ~6 entries on top of the entries themselves.
        let tree = self.tree.size() * std::mem::size_of::<Entry>() * 7 / 6;
        let map = self.by_village.capacity() * (std::mem::size_of::<(i64, u32)>() + 1);
        shapes + areas + tree + map
    }
}

/// A GeoJSON Polygon or MultiPolygon as written, converted from `datum` to WGS-84; rings
/// are taken as they are (`registry::areas` checks them before anything is stored).
pub fn shape_from_geojson(value: &geojson::GeometryValue, datum: Datum) -> Option<MultiPolygon<f64>> {
    let ring = |r: &Vec<geojson::Position>| -> LineString<f64> {
        LineString::new(
            r.iter()
                .filter(|p| p.len() >= 2)
                .map(|p| {
                    let (x, y) = datum.to_wgs84(p[0], p[1]);
                    Coord { x, y }
                })
                .collect(),
        )
    };
    let polygon = |rings: &Vec<Vec<geojson::Position>>| -> Option<Polygon<f64>> {
        let (outer, inner) = rings.split_first()?;
        Some(Polygon::new(ring(outer), inner.iter().map(ring).collect()))
    };
    match value {
        geojson::GeometryValue::Polygon { coordinates } => Some(MultiPolygon(vec![polygon(coordinates)?])),
        geojson::GeometryValue::MultiPolygon { coordinates } => {
            Some(MultiPolygon(coordinates.iter().map(polygon).collect::<Option<Vec<_>>>()?))
        }
        _ => None,
    }
}

/// A stored geometry (GeoJSON text of a Polygon or MultiPolygon in `datum`) → WGS-84.
pub fn shape_from_text(text: &str, datum: Datum) -> anyhow::Result<MultiPolygon<f64>> {
    let geometry: geojson::Geometry = text.parse::<geojson::Geometry>()?;
    shape_from_geojson(&geometry.value, datum)
        .ok_or_else(|| anyhow::anyhow!("a stored area is a {}, not a Polygon", geometry.value.type_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A square of `side` degrees with its south-west corner at (lon, lat).
    fn square(village_id: i64, code: &str, lon: f64, lat: f64, side: f64) -> Area {
        let ring = LineString::from(vec![
            (lon, lat),
            (lon + side, lat),
            (lon + side, lat + side),
            (lon, lat + side),
            (lon, lat),
        ]);
        Area { village_id, code: code.into(), station_id: 1, shape: MultiPolygon(vec![Polygon::new(ring, vec![])]) }
    }

    /// Two squares of ~2.2 km side, west and east, sharing the meridian 113.72.
    fn two_villages() -> AreaIndex {
        AreaIndex::build(vec![square(1, "W", 113.70, 34.40, 0.02), square(2, "E", 113.72, 34.40, 0.02)])
    }

    fn wgs(lat: f64, lon: f64) -> Spot {
        Spot { lat, lon, datum: Some(Datum::Wgs84) }
    }

    #[test]
    fn a_point_deep_inside_one_area_is_inside_it() {
        let index = two_villages();
        match index.locate(&wgs(34.41, 113.705), 700.0) {
            Located::Inside(a) => assert_eq!(&*a.code, "W"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_point_near_the_shared_boundary_asks_between_both_its_own_first() {
        let index = two_villages();
        // ~180 m east of the boundary: in E, W is within 700 m.
        match index.locate(&wgs(34.41, 113.722), 700.0) {
            Located::Ambiguous(v) => {
                assert_eq!(v.iter().map(|a| &*a.code).collect::<Vec<_>>(), ["E", "W"]);
            }
            other => panic!("{other:?}"),
        }
        // With a 100 m margin the same point is plainly in E.
        assert!(matches!(index.locate(&wgs(34.41, 113.722), 100.0), Located::Inside(a) if &*a.code == "E"));
    }

    #[test]
    fn a_point_far_from_every_area_is_outside_with_the_nearest() {
        let index = two_villages();
        match index.locate(&wgs(34.60, 113.80), 700.0) {
            Located::Outside { nearest: Some(a) } => assert_eq!(&*a.code, "E"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(AreaIndex::default().locate(&wgs(34.6, 113.8), 700.0), Located::Outside { nearest: None }));
    }

    #[test]
    fn a_gcj02_point_is_converted_before_the_lookup() {
        let index = two_villages();
        // A WGS-84 point in W 300 m west of the boundary; in GCJ-02 it reads ~600 m further
        // east, inside E. Sent as GCJ-02 it lands in W.
        let (lon, lat) = (113.7167, 34.41);
        let (glon, glat) = Datum::Gcj02.from_wgs84(lon, lat);
        assert!(index.containing(glon, glat).is_some_and(|a| &*a.code == "E"), "the shift crosses the boundary");
        let spot = Spot { lat: glat, lon: glon, datum: Some(Datum::Gcj02) };
        assert!(matches!(index.locate(&spot, 100.0), Located::Inside(a) if &*a.code == "W"));
        // Unknown datum: both readings count, so the resident is asked.
        let spot = Spot { lat: glat, lon: glon, datum: None };
        assert!(matches!(index.locate(&spot, 100.0), Located::Ambiguous(v) if v.len() == 2));
    }

    #[test]
    fn the_conversion_round_trips_to_a_millimetre() {
        let (lon, lat) = (116.42079, 39.90105);
        let (g_lon, g_lat) = Datum::Gcj02.from_wgs84(lon, lat);
        // The documented Beijing station example: WGS (39.90105,116.42079) → GCJ (39.90245,116.42703).
        assert!((g_lat - 39.90245).abs() < 2e-5 && (g_lon - 116.42703).abs() < 2e-5, "{g_lat} {g_lon}");
        let (b_lon, b_lat) = Datum::Gcj02.to_wgs84(g_lon, g_lat);
        assert!((b_lon - lon).abs() < 1e-8 && (b_lat - lat).abs() < 1e-8);
    }

    #[test]
    fn a_circle_finds_the_areas_it_touches() {
        let index = two_villages();
        let codes = |v: Vec<&Area>| v.iter().map(|a| a.code.to_string()).collect::<Vec<_>>();
        assert_eq!(codes(index.near(113.705, 34.41, 500.0)), ["W"]);
        assert_eq!(codes(index.near(113.705, 34.41, 1_800.0)), ["W", "E"]);
        assert_eq!(codes(index.neighbours(index.of_village(1).unwrap(), 100.0)), ["E"]);
    }

    #[test]
    fn a_hairline_gap_still_touches_and_a_real_gap_does_not() {
        let square = |lon: f64| {
            MultiPolygon(vec![Polygon::new(
                LineString::from(vec![(lon, 34.0), (lon + 0.01, 34.0), (lon + 0.01, 34.01), (lon, 34.01), (lon, 34.0)]),
                vec![],
            )])
        };
        // 0.5 m and 20 m east of a 0.01° square (≈ 0.92 km wide at 34° N).
        assert!(touch(&square(113.0), &square(113.01 + 0.5 / 92_300.0)));
        assert!(!touch(&square(113.0), &square(113.01 + 20.0 / 92_300.0)));
    }

    /// The example registry's areas, indexed, with village ids 1, 2 … in file order.
    fn example_index() -> (AreaIndex, Vec<String>) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bot-config/example/areas.geojson");
        let raw = std::fs::read_to_string(path).unwrap();
        let collection: geojson::FeatureCollection = raw.parse().unwrap();
        let mut codes = Vec::new();
        let areas = collection
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let code = f.property("code").and_then(|c| c.as_str()).unwrap().to_string();
                codes.push(code.clone());
                let shape =
                    shape_from_geojson(&f.geometry.as_ref().unwrap().value, crate::domain::Datum::Wgs84).unwrap();
                Area { village_id: i as i64 + 1, code: code.into(), station_id: 1, shape }
            })
            .collect();
        (AreaIndex::build(areas), codes)
    }

    fn reached(index: &AreaIndex, codes: &[String], code: &str) -> Vec<String> {
        let id = codes.iter().position(|c| c == code).unwrap() as i64 + 1;
        let mut out: Vec<String> = index.with_neighbours(id).unwrap().iter().map(|a| a.code.to_string()).collect();
        out.sort();
        out
    }

    #[test]
    fn an_area_reaches_itself_and_every_area_it_touches_even_at_a_corner() {
        let (index, codes) = example_index();
        // 和庄村: 前店村 east and 王庄村 north share an edge; 东岗村 meets it at one corner.
        assert_eq!(
            reached(&index, &codes, "410184101201"),
            ["410184101201", "410184101202", "410184101204", "410184101205"]
        );
        // 前店村 is notched by grids 001–003 (edges); 004 and 006 meet it at the notch's
        // corners. Grid 005's box touches 前店村's box (it sits on the notch's rim line), but
        // its area is 0.4 km from 前店村 (grids 002, 004 and 006 lie between): it is left out.
        assert_eq!(
            reached(&index, &codes, "410184101202"),
            [
                "410184101001",
                "410184101002",
                "410184101003",
                "410184101004",
                "410184101006",
                "410184101201",
                "410184101202",
                "410184101203",
                "410184101204",
                "410184101205",
                "410184101206"
            ]
        );
        let g5 = index.of_village(codes.iter().position(|c| c == "410184101005").unwrap() as i64 + 1).unwrap();
        let qd = index.of_village(2).unwrap();
        assert!(index.neighbours(qd, TOUCH_M).iter().any(|a| a.village_id == g5.village_id), "boxes touch");
        assert!(!touch(&qd.shape, &g5.shape), "areas do not");
    }
}
