//! A reader for GGUF model files (the llama.cpp / GGML format), version 2 and 3.
//!
//! Owns [`GgufFile`]: the header, every metadata key/value ([`MetaValue`], all thirteen value
//! types including nested arrays), the tensor infos ([`TensorInfo`]) and the tensor data,
//! and dequantisation of F32, F16, BF16, Q4_0, Q4_1 and Q8_0 tensors to `f32`
//! ([`GgufFile::tensor_f32`]). It knows nothing about what the tensors mean (that is
//! [`crate::model::llama`]) or about tokenisers (that is [`crate::data::gguf_tokenizer`]).
//!
//! Layout (all little-endian; `string` = u64 byte length + UTF-8 bytes):
//!
//! ```text
//! u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
//! n_kv      x { string key | u32 value_type | value }          (array: u32 type, u64 n, n values)
//! n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//! padding to `general.alignment` (default 32) | tensor data (offsets relative to here)
//! ```
//!
//! `ne[0]` is the innermost (contiguous) dimension, so a GGUF tensor with `ne = [a, b]` is a
//! row-major `[b, a]` matrix ([`TensorInfo::shape`] gives that order).
//!
//! Quantised blocks hold 32 elements each (GGML's `ggml-common.h`):
//!
//! ```text
//! Q8_0: f16 d | i8 q[32]                 x_i = d * q_i
//! Q4_0: f16 d | u8 qs[16]                x_i = d * (nib_i - 8)
//! Q4_1: f16 d | f16 m | u8 qs[16]        x_i = d * nib_i + m
//!       nib_i = qs[i] & 0x0F for i in 0..16,  qs[i - 16] >> 4 for i in 16..32
//! ```
//!
//! Every malformed input (bad magic, unknown version or type, a length or offset past the end
//! of the file, a tensor overlapping the end) is an error naming the file and the rule broken;
//! nothing here panics on file contents.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `"GGUF"` read as a little-endian u32.
const MAGIC: u32 = u32::from_le_bytes(*b"GGUF");
/// Alignment of the tensor data when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Elements per block in the 32-element quantisation formats.
pub const QK: usize = 32;
/// Deepest array nesting accepted (real files use 1); a guard against hostile input.
const MAX_ARRAY_DEPTH: usize = 4;
/// Largest dimension count of a tensor (GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;

/// A GGML tensor element type, as stored in a tensor info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    Bf16,
    /// 32-element blocks: f16 scale, 16 bytes of 4-bit values, offset 8.
    Q4_0,
    /// 32-element blocks: f16 scale, f16 minimum, 16 bytes of 4-bit values.
    Q4_1,
    /// 32-element blocks: f16 scale, 32 signed bytes.
    Q8_0,
    /// Any other GGML type id (parsed, not dequantised).
    Other(u32),
}

impl GgmlType {
    fn from_id(id: u32) -> GgmlType {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::Bf16,
            other => GgmlType::Other(other),
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for a type this reader cannot size.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::Bf16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((QK, 2 + QK / 2)),
            GgmlType::Q4_1 => Some((QK, 2 + 2 + QK / 2)),
            GgmlType::Q8_0 => Some((QK, 2 + QK)),
            GgmlType::Other(_) => None,
        }
    }

    /// Short name, as llama.cpp prints it (`Q4_1`, `F32`, `type 12`).
    pub fn name(self) -> String {
        match self {
            GgmlType::F32 => "F32".into(),
            GgmlType::F16 => "F16".into(),
            GgmlType::Bf16 => "BF16".into(),
            GgmlType::Q4_0 => "Q4_0".into(),
            GgmlType::Q4_1 => "Q4_1".into(),
            GgmlType::Q8_0 => "Q8_0".into(),
            GgmlType::Other(id) => format!("type {id}"),
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8.
    String(String),
    /// Type 9: elements all of one type.
    Array(Vec<MetaValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where and how one tensor is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// GGML dimensions, innermost first (`ne[0]` is contiguous).
    pub ne: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the tensor data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }

    /// Row-major shape (outermost first): `ne` reversed, as `usize`.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A GGUF file's header: its metadata and tensor table, without the tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, MetaValue>,
    /// Tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section and of every tensor offset.
    pub alignment: u64,
    /// Byte offset of the tensor data section.
    data_start: u64,
}

/// A parsed GGUF file, with its bytes in memory. It dereferences to its [`GgufHeader`]
/// (metadata and tensor table).
#[derive(Debug, Clone)]
pub struct GgufFile {
    header: GgufHeader,
    bytes: Vec<u8>,
}

impl std::ops::Deref for GgufFile {
    type Target = GgufHeader;
    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}

/// Little-endian cursor over the file bytes; every read checks the remaining length.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> Error {
        gguf_error(self.path, &format!("{what} (at byte {})", self.pos))
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(&format!(
                "{what}: needs {n} bytes but only {left} remain (file truncated or corrupt)"
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let start = self.pos;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| {
            gguf_error(
                self.path,
                &format!("{what}: string at byte {start} is not valid UTF-8"),
            )
        })
    }

    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.u8(what)?),
            1 => MetaValue::I8(self.u8(what)? as i8),
            2 => MetaValue::U16(self.u16(what)?),
            3 => MetaValue::I16(self.u16(what)? as i16),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(self.u32(what)? as i32),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.u8(what)? {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.err(&format!("{what}: bool byte must be 0 or 1, got {b}"))),
            },
            8 => MetaValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(&format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte: a count past the end is corrupt, and
                // checking it first keeps a hostile count from reserving memory.
                let left = (self.bytes.len() - self.pos) as u64;
                if n > left {
                    return Err(self.err(&format!(
                        "{what}: array of {n} elements cannot fit in the {left} bytes left"
                    )));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(self.u64(what)? as i64),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => {
                return Err(self.err(&format!(
                    "{what}: unknown metadata value type {other} (GGUF defines 0..=12)"
                )));
            }
        })
    }
}

fn gguf_error(path: &Path, message: &str) -> Error {
    Error::msg(format!("{}: GGUF: {message}", path.display()))
}

/// A model file that is missing says how to fetch the project's model; other I/O errors name
/// the file.
fn not_found_or_io(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::msg(format!(
            "{}: model file not found; run `scripts/fetch-model.sh` to download \
             SmolLM2-135M-Instruct into models/",
            path.display()
        ))
    } else {
        Error::io(path, e)
    }
}

impl GgufFile {
    /// Read and parse a GGUF file. A missing file gets an error that says how to fetch the
    /// project's pretrained model (`scripts/fetch-model.sh`).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| not_found_or_io(path, e))?;
        GgufFile::parse(bytes, path)
    }

    /// Parse GGUF `bytes`; `path` only names the source in errors.
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<GgufFile> {
        let header = GgufHeader::parse(&bytes, path)?;
        if header.data_start > bytes.len() as u64 {
            return Err(gguf_error(
                path,
                &format!(
                    "tensor data would start at byte {}, past the end ({} bytes)",
                    header.data_start,
                    bytes.len()
                ),
            ));
        }
        let file = GgufFile { header, bytes };
        for t in &file.tensors {
            file.tensor_bytes(t)?;
        }
        Ok(file)
    }
}

impl GgufHeader {
    /// Read the header of the GGUF file at `path` (metadata and tensor table) without its
    /// tensor data: the start of the file is read, four times more at each try, until the
    /// header fits (a corrupt file is read whole before its error is given).
    pub fn read(path: impl AsRef<Path>) -> Result<GgufHeader> {
        use std::io::Read;
        let path = path.as_ref();
        let mut file = std::fs::File::open(path).map_err(|e| not_found_or_io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut bytes = Vec::new();
        let mut want: u64 = 1 << 22;
        loop {
            let target = want.min(len);
            (&mut file)
                .take(target - bytes.len() as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(path, e))?;
            match GgufHeader::parse(&bytes, path) {
                Ok(h) if h.data_start <= len => return Ok(h),
                Ok(h) => {
                    return Err(gguf_error(
                        path,
                        &format!(
                            "tensor data would start at byte {}, past the end ({len} bytes)",
                            h.data_start
                        ),
                    ));
                }
                Err(e) if target >= len => return Err(e),
                Err(_) => want = want.saturating_mul(4),
            }
        }
    }

    /// Parse the header at the start of `bytes`; `path` only names the source in errors.
    fn parse(bytes: &[u8], path: &Path) -> Result<GgufHeader> {
        let mut c = Cursor {
            bytes,
            pos: 0,
            path,
        };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(gguf_error(
                path,
                &format!("magic is {magic:#010x}, a GGUF file starts with \"GGUF\""),
            ));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(gguf_error(
                path,
                &format!("version {version} is not supported (this reader reads 2 and 3)"),
            ));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}"))?;
            let ty = c.u32(&format!("type of metadata '{key}'"))?;
            let value = c.value(ty, &format!("metadata '{key}'"), 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(gguf_error(
                    path,
                    &format!("metadata key '{key}' appears twice"),
                ));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(gguf_error(
                        path,
                        &format!("general.alignment must be a power of two, got {v:?}"),
                    ));
                }
            },
        };
        let mut tensors = Vec::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor {i}"))?;
            let n_dims = c.u32(&format!("tensor '{name}' n_dims"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(gguf_error(
                    path,
                    &format!("tensor '{name}': n_dims {n_dims} must be in 1..={MAX_DIMS}"),
                ));
            }
            let ne = (0..n_dims)
                .map(|_| c.u64(&format!("tensor '{name}' dimensions")))
                .collect::<Result<Vec<_>>>()?;
            let ggml_type = GgmlType::from_id(c.u32(&format!("tensor '{name}' type"))?);
            let offset = c.u64(&format!("tensor '{name}' offset"))?;
            if !offset.is_multiple_of(alignment) {
                return Err(gguf_error(
                    path,
                    &format!(
                        "tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"
                    ),
                ));
            }
            tensors.push(TensorInfo {
                name,
                ne,
                ggml_type,
                offset,
            });
        }
        let data_start = (c.pos as u64).next_multiple_of(alignment);
        Ok(GgufHeader {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_start,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata value `key`, or an error naming the file and key.
    pub fn meta(&self, key: &str) -> Result<&MetaValue> {
        self.metadata
            .get(key)
            .ok_or_else(|| gguf_error(&self.path, &format!("metadata key '{key}' is missing")))
    }

    /// Metadata `key` as an unsigned integer.
    pub fn meta_u64(&self, key: &str) -> Result<u64> {
        let v = self.meta(key)?;
        v.as_u64().ok_or_else(|| {
            gguf_error(
                &self.path,
                &format!("metadata '{key}' must be a non-negative integer, got {v:?}"),
            )
        })
    }

    /// Metadata `key` as a float (integers accepted).
    pub fn meta_f64(&self, key: &str) -> Result<f64> {
        let v = self.meta(key)?;
        v.as_f64().ok_or_else(|| {
            gguf_error(
                &self.path,
                &format!("metadata '{key}' must be a number, got {v:?}"),
            )
        })
    }

    /// Metadata `key` as a string.
    pub fn meta_str(&self, key: &str) -> Result<&str> {
        let v = self.meta(key)?;
        v.as_str()
            .ok_or_else(|| gguf_error(&self.path, &format!("metadata '{key}' must be a string")))
    }

    /// Metadata `key` as an array.
    pub fn meta_array(&self, key: &str) -> Result<&[MetaValue]> {
        let v = self.meta(key)?;
        v.as_array()
            .ok_or_else(|| gguf_error(&self.path, &format!("metadata '{key}' must be an array")))
    }

    /// The info of tensor `name`, or an error naming the file and tensor.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| gguf_error(&self.path, &format!("tensor '{name}' is missing")))
    }
}

impl GgufFile {
    /// The stored bytes of a tensor, checked to lie inside the file.
    fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8]> {
        let (per_block, block_bytes) = t.ggml_type.block_layout().ok_or_else(|| {
            gguf_error(
                &self.path,
                &format!(
                    "tensor '{}': {} is not a type this reader can size",
                    t.name,
                    t.ggml_type.name()
                ),
            )
        })?;
        let n =
            t.ne.iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| {
                    gguf_error(
                        &self.path,
                        &format!("tensor '{}': element count overflows", t.name),
                    )
                })?;
        if !t.ne[0].is_multiple_of(per_block as u64) {
            return Err(gguf_error(
                &self.path,
                &format!(
                    "tensor '{}': row length {} is not a multiple of the {} block size {per_block}",
                    t.name,
                    t.ne[0],
                    t.ggml_type.name()
                ),
            ));
        }
        let size = (n / per_block as u64).checked_mul(block_bytes as u64);
        let start = self.data_start.checked_add(t.offset);
        let end = match (start, size) {
            (Some(s), Some(z)) => s.checked_add(z),
            _ => None,
        };
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() as u64 => {
                Ok(&self.bytes[s as usize..e as usize])
            }
            _ => Err(gguf_error(
                &self.path,
                &format!(
                    "tensor '{}' ({} x {}, offset {}) runs past the end of the file ({} bytes)",
                    t.name,
                    t.ggml_type.name(),
                    n,
                    t.offset,
                    self.bytes.len()
                ),
            )),
        }
    }

    /// Tensor `name` dequantised to f32, with its row-major shape ([`TensorInfo::shape`]).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self.tensor_info(name)?;
        let bytes = self.tensor_bytes(t)?;
        let data = dequantize(t.ggml_type, bytes)
            .map_err(|m| gguf_error(&self.path, &format!("tensor '{}': {m}", t.name)))?;
        Ok((data, t.shape()))
    }
}

/// IEEE 754 binary16 bits to f32 (exact: every f16 is an f32). Subnormals, infinities and NaN
/// included.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1F);
    let mant = u32::from(bits & 0x3FF);
    let out = match (exp, mant) {
        (0, 0) => sign,
        // Subnormal: mant * 2^-24, exact in f32.
        (0, m) => {
            let v = m as f32 * f32::powi(2.0, -24);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(out)
}

/// bfloat16 bits to f32 (the top half of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Dequantise `bytes` of type `ty` to f32. The length must be a whole number of blocks.
/// Errors (as plain text, the caller adds the file and tensor) for types not implemented here.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let (per_block, block_bytes) = ty
        .block_layout()
        .ok_or_else(|| format!("{} cannot be dequantised by this reader", ty.name()))?;
    if !bytes.len().is_multiple_of(block_bytes) {
        return Err(format!(
            "{} bytes is not a whole number of {}-byte {} blocks",
            bytes.len(),
            block_bytes,
            ty.name()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * per_block);
    let f16_at = |b: &[u8], i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|b| f16_at(b, 0))),
        GgmlType::Bf16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        ),
        GgmlType::Q8_0 => {
            for b in bytes.chunks_exact(block_bytes) {
                let d = f16_at(b, 0);
                out.extend(b[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Q4_0 => {
            for b in bytes.chunks_exact(block_bytes) {
                let d = f16_at(b, 0);
                let qs = &b[2..];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0F) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        GgmlType::Q4_1 => {
            for b in bytes.chunks_exact(block_bytes) {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                let qs = &b[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0F) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        GgmlType::Other(_) => {
            return Err(format!(
                "{} cannot be dequantised by this reader",
                ty.name()
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f16 bit patterns of the exact values the blocks below use (IEEE 754 binary16).
    fn h(x: f32) -> [u8; 2] {
        let bits: u16 = match x {
            0.25 => 0x3400,
            0.5 => 0x3800,
            1.0 => 0x3C00,
            -1.0 => 0xBC00,
            2.0 => 0x4000,
            _ => panic!("no f16 pattern written for {x}"),
        };
        bits.to_le_bytes()
    }

    /// Oracle: binary16 encodings from the IEEE 754 tables: smallest subnormal 2^-24, largest
    /// finite 65504, 1/3 rounded (0x3555 = 0.333251953125), infinity, signed zero.
    #[test]
    fn f16_bits_by_hand() {
        assert_eq!(f16_to_f32(0x0001), f32::powi(2.0, -24));
        assert_eq!(f16_to_f32(0x8001), -f32::powi(2.0, -24));
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert_eq!(f16_to_f32(0xFBFF), -65504.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7C00), f32::INFINITY);
        assert!(f16_to_f32(0x7E00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(bf16_to_f32(0xC040), -3.0);
    }

    /// Oracle: a hand-built Q8_0 block, d = 0.5 (exact in f16), q_i = i - 16, so x_i = (i-16)/2.
    #[test]
    fn q8_0_block_by_hand() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let x = dequantize(GgmlType::Q8_0, &b).unwrap();
        let want: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect();
        assert_eq!(x, want);
    }

    /// Oracle: a hand-built Q4_1 block, d = 0.25, m = -1. Byte j holds low nibble j % 16 and
    /// high nibble 15 - j % 16, so element j (j < 16) is 0.25*j - 1 and element 16 + j is
    /// 0.25*(15 - j) - 1: the low nibbles are elements 0..16, the high nibbles 16..32.
    #[test]
    fn q4_1_block_by_hand() {
        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let x = dequantize(GgmlType::Q4_1, &b).unwrap();
        let mut want: Vec<f32> = (0..16).map(|j| 0.25 * j as f32 - 1.0).collect();
        want.extend((0..16).map(|j| 0.25 * (15 - j) as f32 - 1.0));
        assert_eq!(x, want);
    }

    /// Oracle: hand-built Q4_0 block, d = 2, nibble n -> 2 (n - 8); same nibble order as Q4_1.
    #[test]
    fn q4_0_block_by_hand() {
        let mut b = h(2.0).to_vec();
        b.extend((0..16u8).map(|j| j | (j << 4)));
        let x = dequantize(GgmlType::Q4_0, &b).unwrap();
        let half: Vec<f32> = (0..16).map(|j| 2.0 * (j as f32 - 8.0)).collect();
        assert_eq!(x, [half.clone(), half].concat());
    }

    /// Oracle: IEEE encodings written out (f16 0x3C00 = 1.0, 0xC000 = -2.0; bf16 0x3F80 = 1.0).
    #[test]
    fn float_types_by_hand() {
        assert_eq!(
            dequantize(GgmlType::F16, &[0x00, 0x3C, 0x00, 0xC0]).unwrap(),
            vec![1.0, -2.0]
        );
        assert_eq!(
            dequantize(GgmlType::Bf16, &[0x80, 0x3F]).unwrap(),
            vec![1.0]
        );
        assert_eq!(
            dequantize(GgmlType::F32, &1.5f32.to_le_bytes()).unwrap(),
            vec![1.5]
        );
        assert!(dequantize(GgmlType::Q8_0, &[0; 33]).is_err());
        assert!(dequantize(GgmlType::Other(12), &[0; 4]).is_err());
    }

    fn put_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    /// A complete small file: every scalar metadata type, a string array, one Q8_0 and one F32
    /// tensor, alignment 32 with padding.
    fn tiny_file() -> Vec<u8> {
        tiny_file_with("héllo")
    }

    /// [`tiny_file`] with `text` as the value of `a.str`.
    fn tiny_file_with(text: &str) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(2u64.to_le_bytes()); // tensors
        b.extend(14u64.to_le_bytes()); // kv
        let scalars: [(&str, u32, Vec<u8>); 12] = [
            ("a.u8", 0, vec![7]),
            ("a.i8", 1, vec![0xFF]),
            ("a.u16", 2, 300u16.to_le_bytes().to_vec()),
            ("a.i16", 3, (-300i16).to_le_bytes().to_vec()),
            ("a.u32", 4, 70000u32.to_le_bytes().to_vec()),
            ("a.i32", 5, (-70000i32).to_le_bytes().to_vec()),
            ("a.f32", 6, 1.25f32.to_le_bytes().to_vec()),
            ("a.bool", 7, vec![1]),
            ("a.u64", 10, u64::MAX.to_le_bytes().to_vec()),
            ("a.i64", 11, (-5i64).to_le_bytes().to_vec()),
            ("a.f64", 12, 0.5f64.to_le_bytes().to_vec()),
            ("general.alignment", 4, 32u32.to_le_bytes().to_vec()),
        ];
        for (k, t, v) in scalars {
            put_str(&mut b, k);
            b.extend(t.to_le_bytes());
            b.extend(v);
        }
        put_str(&mut b, "a.str");
        b.extend(8u32.to_le_bytes());
        put_str(&mut b, text);
        put_str(&mut b, "a.arr");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        put_str(&mut b, "x");
        put_str(&mut b, "yz");
        // Tensor infos: q (Q8_0, ne [32, 2] -> 68 bytes at 0), f (F32, ne [3] at 96).
        put_str(&mut b, "q");
        b.extend(2u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        put_str(&mut b, "f");
        b.extend(1u32.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(96u64.to_le_bytes());
        b.resize(b.len().next_multiple_of(32), 0);
        for row in 0..2 {
            b.extend(h(1.0));
            b.extend((0..32).map(|i| (i + row * 32) as u8));
        }
        b.resize(b.len() + (96 - 68), 0);
        for x in [1.0f32, 2.0, 3.0] {
            b.extend(x.to_le_bytes());
        }
        b
    }

    /// Oracle: the values written by `tiny_file` above.
    #[test]
    fn parses_every_metadata_type_and_tensor() {
        let f = GgufFile::parse(tiny_file(), Path::new("tiny.gguf")).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.meta("a.u8").unwrap(), &MetaValue::U8(7));
        assert_eq!(f.meta("a.i8").unwrap(), &MetaValue::I8(-1));
        assert_eq!(f.meta("a.u16").unwrap(), &MetaValue::U16(300));
        assert_eq!(f.meta("a.i16").unwrap(), &MetaValue::I16(-300));
        assert_eq!(f.meta_u64("a.u32").unwrap(), 70000);
        assert_eq!(f.meta("a.i32").unwrap(), &MetaValue::I32(-70000));
        assert_eq!(f.meta_f64("a.f32").unwrap(), 1.25);
        assert_eq!(f.meta("a.bool").unwrap(), &MetaValue::Bool(true));
        assert_eq!(f.meta_u64("a.u64").unwrap(), u64::MAX);
        assert_eq!(f.meta("a.i64").unwrap().as_i64(), Some(-5));
        assert_eq!(f.meta_f64("a.f64").unwrap(), 0.5);
        assert_eq!(f.meta_str("a.str").unwrap(), "héllo");
        let arr: Vec<_> = f
            .meta_array("a.arr")
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(arr, ["x", "yz"]);
        let (q, shape) = f.tensor_f32("q").unwrap();
        assert_eq!(shape, [2, 32]);
        assert_eq!(q, (0..64).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(f.tensor_f32("f").unwrap(), (vec![1.0, 2.0, 3.0], vec![3]));
        let e = f.tensor_f32("nope").unwrap_err().to_string();
        assert!(
            e.contains("tiny.gguf") && e.contains("'nope' is missing"),
            "{e}"
        );
        assert!(f.meta_str("a.u8").is_err());
    }

    /// Oracle: the whole file's parse of the same bytes. The second file's header (5 MiB of
    /// metadata) is longer than the first read, so it takes the growing read.
    #[test]
    fn the_header_alone_reads_as_the_whole_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        for text in ["héllo".to_string(), "z".repeat(5 << 20)] {
            let bytes = tiny_file_with(&text);
            std::fs::write(&path, &bytes).unwrap();
            let full = GgufFile::parse(bytes, &path).unwrap();
            let head = GgufHeader::read(&path).unwrap();
            assert_eq!(head.metadata, full.metadata);
            assert_eq!(head.tensors, full.tensors);
            assert_eq!(
                (head.version, head.alignment, head.data_start),
                (full.version, full.alignment, full.data_start)
            );
            assert_eq!(head.meta_str("a.str").unwrap(), text);
        }
        // Cut inside the header: an error naming the file, after reading all there is.
        std::fs::write(&path, &tiny_file()[..40]).unwrap();
        let e = GgufHeader::read(&path).unwrap_err().to_string();
        assert!(e.contains("t.gguf: GGUF:"), "{e}");
        let e = GgufHeader::read(dir.path().join("absent.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts/fetch-model.sh"), "{e}");
    }

    /// Malformed files are errors naming the file and the rule, never panics: every truncation
    /// of a valid file, a bad magic, a bad version, and a tensor offset past the end.
    #[test]
    fn malformed_files_are_errors() {
        let good = tiny_file();
        for n in 0..good.len() {
            let r = GgufFile::parse(good[..n].to_vec(), Path::new("cut.gguf"));
            let e = r.expect_err("a truncated file must not parse").to_string();
            assert!(e.starts_with("cut.gguf: GGUF:"), "{e}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        let e = GgufFile::parse(bad, Path::new("m.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic"), "{e}");
        let mut bad = good.clone();
        bad[4] = 9;
        let e = GgufFile::parse(bad, Path::new("v.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 9"), "{e}");
        let e = GgufFile::open("models/definitely-absent.gguf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts/fetch-model.sh"), "{e}");
    }
}
