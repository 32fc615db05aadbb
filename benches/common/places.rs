//! A generated province with areas (issue #24), for the areas checks' test
//! (tests/it/registry.rs) and the places benchmark (`benches/places.rs`): `stations_x ×
//! stations_y` stations of `cols × rows` villages each, the five CSV files and the areas as a
//! jittered grid tiling (neighbours share every vertex; 20–36 vertices a village), split in
//! two files under `areas/`: `base.geojson` (WGS-84, the default) and `gcj02.geojson` (a
//! checkerboard of the villages, every vertex converted with `Datum::Gcj02.from_wgs84`, the
//! collection's `"datum": "GCJ02"`). With `plant`, five defects go in: a gap and an overlap
//! in station 1, an unclosed ring, a bow-tie ring and an unknown code in station 2.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;

use cunjing::domain::Datum;

/// Degrees a village spans: ~1.4 km × 1.3 km at 30° N.
const DX: f64 = 0.015;
const DY: f64 = 0.012;
const LON0: f64 = 110.0;
const LAT0: f64 = 30.0;

/// The shape of a generated province.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub stations_x: usize,
    pub stations_y: usize,
    pub cols: usize,
    pub rows: usize,
}

impl Plan {
    pub fn villages(&self) -> usize {
        self.stations_x * self.stations_y * self.cols * self.rows
    }
}

/// A planted defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    Gap,
    Overlap,
    Unclosed,
    BowTie,
    UnknownCode,
}

/// Where a defect was planted: the features it involves as (file name, 1-based feature), the
/// one it was planted in first.
#[derive(Debug, Clone)]
pub struct Planted {
    pub defect: Defect,
    pub features: Vec<(&'static str, usize)>,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub features: usize,
    pub vertices: usize,
    pub planted: Vec<Planted>,
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fixed pseudo-random number in [0, 1) for `key`.
fn unit(key: u64) -> f64 {
    (mix(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// Corner (i, j) of the grid, jittered by up to ±15 % of a cell.
fn corner(i: usize, j: usize) -> (f64, f64) {
    let k = ((i as u64) << 32) | j as u64;
    (LON0 + (i as f64 + 0.3 * (unit(k * 2) - 0.5)) * DX, LAT0 + (j as f64 + 0.3 * (unit(k * 2 + 1) - 0.5)) * DY)
}

/// The points between two corners of an edge (4–8 of them, wobbling across the edge by up to
/// ±3 % of a cell), from `a` to `b`; `key` names the edge.
fn edge(a: (f64, f64), b: (f64, f64), key: u64) -> Vec<(f64, f64)> {
    let m = 4 + (mix(key) % 5) as usize;
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    // The unit normal in cell units, scaled back to degrees.
    let (nx, ny) = (-dy / DY, dx / DX);
    let len = (nx * nx + ny * ny).sqrt();
    (1..=m)
        .map(|k| {
            let t = k as f64 / (m + 1) as f64;
            let w = 0.06 * (unit(key ^ (k as u64 * 0x1234_5678)) - 0.5);
            (a.0 + t * dx + w * nx / len * DX, a.1 + t * dy + w * ny / len * DY)
        })
        .collect()
}

fn h_edge(i: usize, j: usize) -> Vec<(f64, f64)> {
    edge(corner(i, j), corner(i + 1, j), mix(((i as u64) << 32) | j as u64) | 1)
}

fn v_edge(i: usize, j: usize) -> Vec<(f64, f64)> {
    edge(corner(i, j), corner(i, j + 1), mix(((i as u64) << 32) | j as u64) & !1)
}

/// The ring of cell (i, j), counter-clockwise, closed; and the index of the middle point of
/// its bottom edge.
fn cell(i: usize, j: usize) -> (Vec<(f64, f64)>, usize) {
    let mut ring = vec![corner(i, j)];
    let bottom = h_edge(i, j);
    let middle = 1 + bottom.len() / 2;
    ring.extend(bottom);
    ring.push(corner(i + 1, j));
    ring.extend(v_edge(i + 1, j));
    ring.push(corner(i + 1, j + 1));
    ring.extend(h_edge(i, j + 1).into_iter().rev());
    ring.push(corner(i, j + 1));
    ring.extend(v_edge(i, j).into_iter().rev());
    ring.push(corner(i, j));
    (ring, middle)
}

/// Village code of station `s`, village `v` of it.
pub fn village_code(s: usize, v: usize) -> String {
    format!("4{s:05}{v:06}")
}

pub fn station_code(s: usize) -> String {
    format!("S{s:05}")
}

/// Writes the province to `dir` (the five CSV files and `areas/`).
pub fn write_province(dir: &Path, plan: Plan, plant: bool) -> Written {
    if plant {
        assert!(plan.stations_x * plan.stations_y >= 3 && plan.cols >= 4 && plan.rows >= 4, "too small to plant in");
    }
    let stations = plan.stations_x * plan.stations_y;
    let mut st = String::from("code,name,duty_phone,address\n");
    let mut of = String::from("code,station,name,kind,address,hours,phone\n");
    let mut fo = String::from("badge,name,kind,phone,station\n");
    let mut vi = String::from("code,name,kind,office,households,population\n");
    let mut asg = String::from("village,badge,role,since,until\n");
    for s in 0..stations {
        let code = station_code(s);
        writeln!(st, "{code},第{s}派出所,0371-62581110,").unwrap();
        writeln!(of, "O{s:05},{code},第{s}警务室,office,,,").unwrap();
        writeln!(fo, "{},民警{s},police,,{code}", 100_000 + s).unwrap();
        for v in 0..plan.cols * plan.rows {
            let vc = village_code(s, v);
            writeln!(vi, "{vc},村{s}-{v},village,O{s:05},,").unwrap();
            writeln!(asg, "{vc},{},resident,2024-03-01,", 100_000 + s).unwrap();
        }
    }
    for (file, text) in [
        ("stations.csv", st),
        ("offices.csv", of),
        ("officers.csv", fo),
        ("villages.csv", vi),
        ("assignments.csv", asg),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }

    let mut files = [
        ("base.geojson", String::from("{\"type\": \"FeatureCollection\", \"features\": [\n"), 0usize),
        (
            "gcj02.geojson",
            String::from("{\"type\": \"FeatureCollection\", \"datum\": \"GCJ02\", \"features\": [\n"),
            0usize,
        ),
    ];
    let mut written = Written::default();
    // Where each village of the planted defects went: (station, col, row) → (file, feature).
    let mut placed: std::collections::HashMap<(usize, usize, usize), (&'static str, usize)> = Default::default();
    for s in 0..stations {
        let (sx, sy) = (s % plan.stations_x, s / plan.stations_x);
        for r in 0..plan.rows {
            for c in 0..plan.cols {
                let (gx, gy) = (sx * plan.cols + c, sy * plan.rows + r);
                let (mut ring, middle) = cell(gx, gy);
                let mut code = village_code(s, r * plan.cols + c);
                if plant {
                    match (s, c, r) {
                        // A gap: the middle of the bottom edge pulled in by a quarter cell.
                        (1, 1, 1) => ring[middle].1 += 0.25 * DY,
                        // An overlap: the middle of the bottom edge pushed into the village below.
                        (1, 2, 2) => ring[middle].1 -= 0.25 * DY,
                        (2, 1, 1) => {
                            ring.pop();
                        }
                        (2, 2, 2) => {
                            let (a, b, cc, d) =
                                (corner(gx, gy), corner(gx + 1, gy), corner(gx + 1, gy + 1), corner(gx, gy + 1));
                            ring = vec![a, cc, b, d, a];
                        }
                        (2, 3, 3) => code = "499999999999".into(),
                        _ => {}
                    }
                }
                let layer = (gx + gy) % 2;
                let datum = if layer == 1 { Datum::Gcj02 } else { Datum::Wgs84 };
                let (name, text, count) = &mut files[layer];
                *count += 1;
                placed.insert((s, c, r), (*name, *count));
                if *count > 1 {
                    text.push_str(",\n");
                }
                let coords: Vec<String> = ring
                    .iter()
                    .map(|(x, y)| {
                        let (x, y) = datum.from_wgs84(*x, *y);
                        format!("[{x}, {y}]")
                    })
                    .collect();
                write!(
                    text,
                    "{{\"type\": \"Feature\", \"properties\": {{\"code\": \"{code}\"}}, \"geometry\": {{\"type\": \"Polygon\", \"coordinates\": [[{}]]}}}}",
                    coords.join(", ")
                )
                .unwrap();
                written.features += 1;
                written.vertices += ring.len() - 1;
            }
        }
    }
    std::fs::create_dir_all(dir.join("areas")).unwrap();
    for (name, mut text, _) in files {
        text.push_str("\n]}\n");
        std::fs::write(dir.join("areas").join(name), text).unwrap();
    }
    if plant {
        let at = |s, c, r| placed[&(s, c, r)];
        written.planted = vec![
            Planted { defect: Defect::Gap, features: vec![at(1, 1, 1), at(1, 1, 0)] },
            Planted { defect: Defect::Overlap, features: vec![at(1, 2, 2), at(1, 2, 1)] },
            Planted { defect: Defect::Unclosed, features: vec![at(2, 1, 1)] },
            Planted { defect: Defect::BowTie, features: vec![at(2, 2, 2)] },
            Planted { defect: Defect::UnknownCode, features: vec![at(2, 3, 3)] },
        ];
    }
    written
}
