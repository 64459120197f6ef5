//! Tensor types a GGUF file may hold that candle cannot read (llama.cpp's IQ and ternary
//! quantizations, MXFP4, ...). candle stops at the first one with "unknown dtype for tensor
//! 23"; this reads the header itself to say which tensor, which type, and what to do.

use std::io::{BufReader, Read};
use std::path::Path;

/// GGML type ids candle's GGUF reader accepts.
const READABLE: &[u32] = &[0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 30];

/// llama.cpp's name for a GGML type id (`ggml.h`), for messages.
fn type_name(id: u32) -> String {
    let name = match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("GGML type {id}"),
    };
    name.to_string()
}

/// A message naming the first tensor of the file at `path` whose type cannot be loaded, or
/// `None` when every tensor's type is readable (or the header cannot be parsed).
pub(crate) fn unsupported_tensor(path: &Path) -> Option<String> {
    let mut r = BufReader::new(std::fs::File::open(path).ok()?);
    let (name, id) = first_unreadable(&mut r).ok()??;
    Some(format!(
        "{}: tensor `{name}` is {}, a quantization this engine cannot run (supported: F32, F16, \
         BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q2_K to Q6_K); requantize the \
         model to Q4_K_M with llama.cpp's `llama-quantize --allow-requantize in.gguf out.gguf \
         Q4_K_M`, or download a Q4_K_M, Q6_K or Q8_0 file",
        path.display(),
        type_name(id)
    ))
}

fn first_unreadable(r: &mut impl Read) -> std::io::Result<Option<(String, u32)>> {
    let bad = || std::io::Error::other("not a GGUF header");
    if read_u32(r)? != u32::from_le_bytes(*b"GGUF") {
        return Err(bad());
    }
    // Version 1 counted in 32 bits, later versions in 64.
    let wide = read_u32(r)? >= 2;
    let count = |r: &mut dyn Read| -> std::io::Result<u64> {
        if wide {
            read_u64(r)
        } else {
            read_u32(r).map(u64::from)
        }
    };
    let (tensors, kvs) = (count(r)?, count(r)?);
    for _ in 0..kvs {
        skip_string(r, wide)?;
        let ty = read_u32(r)?;
        skip_value(r, ty, wide)?;
    }
    for _ in 0..tensors {
        let len = count(r)?;
        let name = String::from_utf8_lossy(&read_bytes(r, len)?).into_owned();
        let dims = read_u32(r)?;
        for _ in 0..dims {
            count(r)?;
        }
        let ty = read_u32(r)?;
        read_u64(r)?;
        if !READABLE.contains(&ty) {
            return Ok(Some((name, ty)));
        }
    }
    Ok(None)
}

fn read_u32(r: &mut (impl Read + ?Sized)) -> std::io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut (impl Read + ?Sized)) -> std::io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_bytes(r: &mut (impl Read + ?Sized), len: u64) -> std::io::Result<Vec<u8>> {
    if len > 1 << 20 {
        return Err(std::io::Error::other("GGUF string too long"));
    }
    let mut b = vec![0; len as usize];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn skip_string(r: &mut (impl Read + ?Sized), wide: bool) -> std::io::Result<()> {
    let len = if wide {
        read_u64(r)?
    } else {
        read_u32(r)?.into()
    };
    std::io::copy(&mut r.take(len), &mut std::io::sink())?;
    Ok(())
}

fn skip_value(r: &mut (impl Read + ?Sized), ty: u32, wide: bool) -> std::io::Result<()> {
    let fixed = match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => return skip_string(r, wide),
        9 => {
            let elem = read_u32(r)?;
            let n = if wide {
                read_u64(r)?
            } else {
                read_u32(r)?.into()
            };
            for _ in 0..n {
                skip_value(r, elem, wide)?;
            }
            return Ok(());
        }
        _ => return Err(std::io::Error::other("unknown GGUF value type")),
    };
    std::io::copy(&mut r.take(fixed), &mut std::io::sink())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A GGUF header by hand: one metadata string, a readable tensor, then an IQ4_XS one.
    fn header() -> Vec<u8> {
        let mut b = Vec::new();
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        string(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        string(&mut b, "llama");
        string(&mut b, "tokenizer.ggml.scores");
        b.extend(9u32.to_le_bytes());
        b.extend(6u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend([0u8; 8]);
        for (name, ty, offset) in [
            ("token_embd.weight", 12u32, 0u64),
            ("blk.0.attn_q.weight", 23, 4096),
        ] {
            string(&mut b, name);
            b.extend(2u32.to_le_bytes());
            b.extend(256u64.to_le_bytes());
            b.extend(8u64.to_le_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
        }
        b
    }

    #[test]
    fn an_iq_tensor_is_named_with_its_type_and_a_remedy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, header()).unwrap();
        let err = crate::llama::load::read_gguf(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`blk.0.attn_q.weight` is IQ4_XS"), "{err}");
        assert!(err.contains("llama-quantize"), "{err}");
    }
}
