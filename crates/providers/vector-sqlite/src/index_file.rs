//! The on-disk form of one store's [`Hnsw`] graph, so a restart loads it instead of rebuilding.
//!
//! The file is written to a temporary name, synced, then renamed over the old one, so a crash
//! leaves either the old or the new file, never a torn one. A file that does not parse, or
//! belongs to another store or dimension, is treated as absent: the graph is then rebuilt from
//! the database, which is the source of truth. Layout (little endian):
//!
//! ```text
//! magic "LSVHNSW1" | u32 version | u32 dimension | u32 m | u32 ef_construction
//! i64 store key | u32 nodes | u32 entry | u32 max level
//! nodes × i64 row id | nodes × i64 expires | nodes × u8 deleted | nodes × u8 level
//! nodes × dimension × f32 vector | nodes × (2m+1) × u32 layer-0 links
//! per node with level > 0: level × (m+1) × u32 upper links | magic "LSVHNEND"
//! ```

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::hnsw::{Hnsw, HnswParams, NO_NODE};

const MAGIC: &[u8; 8] = b"LSVHNSW1";
const END: &[u8; 8] = b"LSVHNEND";
const VERSION: u32 = 1;
/// Values are converted through a buffer of this many bytes instead of one call per value.
const CHUNK: usize = 1 << 20;

/// Writes `graph` to `path` atomically (temporary file, fsync, rename, directory fsync).
pub(crate) fn save(graph: &Hnsw, store_key: i64, path: &Path) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(CHUNK, file);
        out.write_all(MAGIC)?;
        for v in [
            VERSION,
            graph.dimension as u32,
            graph.params.m as u32,
            graph.params.ef_construction as u32,
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&store_key.to_le_bytes())?;
        for v in [
            graph.node_count() as u32,
            graph.entry,
            graph.max_level as u32,
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        write_values(&mut out, &graph.rowids, |v| v.to_le_bytes())?;
        write_values(&mut out, &graph.expires, |v| v.to_le_bytes())?;
        let deleted: Vec<u8> = graph.deleted.iter().map(|&d| d as u8).collect();
        out.write_all(&deleted)?;
        out.write_all(&graph.levels)?;
        write_values(&mut out, &graph.vectors, |v| v.to_le_bytes())?;
        write_values(&mut out, &graph.layer0, |v| v.to_le_bytes())?;
        for links in &graph.upper {
            write_values(&mut out, links, |v| v.to_le_bytes())?;
        }
        out.write_all(END)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Makes the rename itself durable.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads a graph written by [`save`] for `store_key` with `dimension`. `Ok(None)` when the file
/// does not exist; an error when it exists but is unusable.
pub(crate) fn load(path: &Path, store_key: i64, dimension: usize) -> io::Result<Option<Hnsw>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let mut input = BufReader::with_capacity(CHUNK, file);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not an index file"));
    }
    let version = read_u32(&mut input)?;
    if version != VERSION {
        return Err(invalid(format!(
            "format version {version}, expected {VERSION}"
        )));
    }
    let file_dimension = read_u32(&mut input)? as usize;
    let m = read_u32(&mut input)? as usize;
    let ef_construction = read_u32(&mut input)? as usize;
    let mut key = [0u8; 8];
    input.read_exact(&mut key)?;
    let file_key = i64::from_le_bytes(key);
    if file_dimension != dimension || file_key != store_key {
        return Err(invalid(format!(
            "written for store {file_key} with dimension {file_dimension}"
        )));
    }
    if !(2..=1024).contains(&m) {
        return Err(invalid(format!("implausible m {m}")));
    }
    let nodes = read_u32(&mut input)? as usize;
    let entry = read_u32(&mut input)?;
    let max_level = read_u32(&mut input)? as usize;
    // Reject sizes the file cannot hold before allocating for them.
    let fixed = nodes as u64 * (8 + 8 + 1 + 1 + 4 * dimension as u64 + 4 * (2 * m as u64 + 1));
    if fixed > length {
        return Err(invalid("shorter than its header says"));
    }

    let mut graph = Hnsw::new(dimension, HnswParams { m, ef_construction });
    graph.rowids = read_values(&mut input, nodes, i64::from_le_bytes)?;
    graph.expires = read_values(&mut input, nodes, i64::from_le_bytes)?;
    let mut flags = vec![0u8; nodes];
    input.read_exact(&mut flags)?;
    graph.deleted = flags.iter().map(|&f| f != 0).collect();
    graph.levels = vec![0u8; nodes];
    input.read_exact(&mut graph.levels)?;
    graph.vectors = read_values(&mut input, nodes * dimension, f32::from_le_bytes)?;
    graph.layer0 = read_values(&mut input, nodes * graph.layer0_slots(), u32::from_le_bytes)?;
    graph.upper = Vec::with_capacity(nodes);
    for node in 0..nodes {
        let level = graph.levels[node] as usize;
        if level > max_level {
            return Err(invalid(format!("node {node} above the top level")));
        }
        let slots = level * graph.upper_slots();
        graph
            .upper
            .push(read_values(&mut input, slots, u32::from_le_bytes)?);
    }
    input.read_exact(&mut magic)?;
    if &magic != END {
        return Err(invalid("missing end marker"));
    }
    if (nodes == 0) != (entry == NO_NODE) || (entry != NO_NODE && entry as usize >= nodes) {
        return Err(invalid("bad entry point"));
    }
    check_links(&graph.layer0, graph.layer0_slots(), nodes)?;
    for links in &graph.upper {
        check_links(links, graph.upper_slots(), nodes)?;
    }
    graph.entry = entry;
    graph.max_level = max_level;
    graph.finish_loading();
    Ok(Some(graph))
}

/// Every link list fits its slots and points at an existing node, so searches cannot index
/// out of bounds on a damaged file.
fn check_links(slots: &[u32], width: usize, nodes: usize) -> io::Result<()> {
    for list in slots.chunks(width) {
        let count = list[0] as usize;
        if count >= width || list[1..=count].iter().any(|&n| n as usize >= nodes) {
            return Err(invalid("link out of range"));
        }
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn write_values<T: Copy, const N: usize>(
    out: &mut impl Write,
    values: &[T],
    encode: impl Fn(T) -> [u8; N],
) -> io::Result<()> {
    let mut buffer = Vec::with_capacity(CHUNK.min(values.len() * N));
    for chunk in values.chunks(CHUNK / N) {
        buffer.clear();
        for &v in chunk {
            buffer.extend_from_slice(&encode(v));
        }
        out.write_all(&buffer)?;
    }
    Ok(())
}

fn read_values<T, const N: usize>(
    input: &mut impl Read,
    count: usize,
    decode: impl Fn([u8; N]) -> T,
) -> io::Result<Vec<T>> {
    let mut values = Vec::with_capacity(count);
    let mut buffer = vec![0u8; CHUNK.min(count * N)];
    let mut left = count;
    while left > 0 {
        let take = left.min(CHUNK / N);
        let bytes = &mut buffer[..take * N];
        input.read_exact(bytes)?;
        values.extend(
            bytes
                .chunks_exact(N)
                .map(|c| decode(c.try_into().expect("exact chunks"))),
        );
        left -= take;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Hnsw {
        let mut g = Hnsw::new(
            3,
            HnswParams {
                m: 4,
                ef_construction: 16,
            },
        );
        for i in 0..200 {
            let x = i as f32;
            g.insert(
                1000 + i,
                &[x.sin(), x.cos(), (x * 0.1).sin()],
                (i % 5 == 0).then_some(99),
            );
        }
        g.remove(1003);
        g
    }

    #[test]
    fn a_saved_graph_loads_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store-1.hnsw");
        let g = graph();
        save(&g, 1, &path).unwrap();
        let back = load(&path, 1, 3).unwrap().unwrap();
        assert_eq!(back.rowids, g.rowids);
        assert_eq!(back.vectors, g.vectors);
        assert_eq!(back.layer0, g.layer0);
        assert_eq!(back.upper, g.upper);
        assert_eq!(back.deleted, g.deleted);
        assert_eq!(back.expires, g.expires);
        assert_eq!(back.live_count(), 199);
        let q = [0.5, 0.5, 0.1];
        assert_eq!(back.search(&q, 5, 16, 0), g.search(&q, 5, 16, 0));
        assert!(!dir.path().join("store-1.tmp").exists());
    }

    #[test]
    fn missing_foreign_and_damaged_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store-1.hnsw");
        assert!(load(&path, 1, 3).unwrap().is_none());
        save(&graph(), 1, &path).unwrap();
        assert!(load(&path, 2, 3).is_err(), "another store's file");
        assert!(load(&path, 1, 4).is_err(), "another dimension");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load(&path, 1, 3).is_err(), "truncated");
        let mut corrupt = bytes.clone();
        // Header, then per node row id, expiry, flag, level and a 3-float vector.
        let layer0_start = 44 + 200 * (8 + 8 + 1 + 1 + 3 * 4);
        corrupt[layer0_start..layer0_start + 4].copy_from_slice(&999u32.to_le_bytes());
        std::fs::write(&path, &corrupt).unwrap();
        assert!(load(&path, 1, 3).is_err(), "link out of range");
    }
}
