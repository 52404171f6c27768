//! CTranslate2 whisper → ggml (the file whisper.cpp and `whisper-rs` load).
//!
//! Reads a CTranslate2 `model.bin` (format version 6: a spec name, then per
//! variable a u16-length name, u8 rank, u32 dims, u8 dtype, u32 byte count
//! and the data; then aliases) plus `tokenizer.json`, and writes ggml:
//! magic, hyper-parameters, the Slaney mel filterbank, the byte-level BPE
//! vocabulary decoded back to bytes, and every tensor under whisper.cpp's
//! name. CTranslate2 fuses attention projections: self-attention
//! `linear_0` is q|k|v, cross-attention `linear_1` is k|v; they are split,
//! and the key projections (which have no bias in whisper) lose their zero
//! bias. The decoder output projection is an alias of the embeddings.
//! Matrices are written f16, vectors, conv biases and positional
//! embeddings f32, as whisper.cpp's own converter does — for whisper base
//! this reproduces the reference `ggml-base.bin` size byte for byte.

use crate::mel;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Why a model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `model.bin` is not what we expect.
    #[error("model.bin: {0}")]
    Format(String),
    /// `tokenizer.json` is not a byte-level BPE vocabulary.
    #[error("tokenizer.json: {0}")]
    Tokenizer(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One CTranslate2 variable: shape, dtype and where its bytes are.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Shape.
    pub dims: Vec<usize>,
    /// CTranslate2 dtype (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16).
    pub dtype: u8,
    offset: usize,
    len: usize,
}

/// A parsed CTranslate2 model file.
pub struct Ct2Model {
    data: Vec<u8>,
    /// Spec name (`WhisperSpec`).
    pub spec: String,
    /// Variables by name (aliases resolved).
    pub variables: HashMap<String, Variable>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| ConvertError::Format(format!("truncated at byte {}", self.pos)))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ConvertError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ConvertError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, ConvertError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| ConvertError::Format("name is not UTF-8".into()))
    }
}

fn dtype_size(dtype: u8) -> Result<usize, ConvertError> {
    match dtype {
        0 | 3 => Ok(4),
        1 => Ok(1),
        2 | 4 | 5 => Ok(2),
        d => Err(ConvertError::Format(format!("unknown dtype {d}"))),
    }
}

impl Ct2Model {
    /// Parses CTranslate2 model bytes.
    pub fn parse(data: Vec<u8>) -> Result<Self, ConvertError> {
        let mut r = Reader {
            data: &data,
            pos: 0,
        };
        let version = r.u32()?;
        if !(5..=6).contains(&version) {
            return Err(ConvertError::Format(format!(
                "binary version {version}, expected 6"
            )));
        }
        let spec = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()? as usize;
        let mut variables = HashMap::with_capacity(count.min(4096));
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(r.u32()? as usize);
            }
            let dtype = r.u8()?;
            let len = r.u32()? as usize;
            let elems: usize = dims.iter().product();
            if elems * dtype_size(dtype)? != len {
                return Err(ConvertError::Format(format!(
                    "{name}: {len} bytes for shape {dims:?}"
                )));
            }
            let offset = r.pos;
            r.take(len)?;
            variables.insert(
                name,
                Variable {
                    dims,
                    dtype,
                    offset,
                    len,
                },
            );
        }
        if r.pos < data.len() {
            let aliases = r.u32()?;
            for _ in 0..aliases {
                let alias = r.string()?;
                let target = r.string()?;
                if let Some(v) = variables.get(&target).cloned() {
                    variables.insert(alias, v);
                }
            }
        }
        Ok(Self {
            data,
            spec,
            variables,
        })
    }

    /// Reads a `model.bin`.
    pub fn open(path: &Path) -> Result<Self, ConvertError> {
        Self::parse(std::fs::read(path).map_err(io(path))?)
    }

    fn var(&self, name: &str) -> Result<&Variable, ConvertError> {
        self.variables
            .get(name)
            .ok_or_else(|| ConvertError::Format(format!("missing variable {name}")))
    }

    fn bytes(&self, v: &Variable) -> &[u8] {
        &self.data[v.offset..v.offset + v.len]
    }

    fn scalar(&self, name: &str) -> Result<usize, ConvertError> {
        let v = self.var(name)?;
        let b = self.bytes(v);
        Ok(match (v.dtype, b.len()) {
            (2, 2) => i16::from_le_bytes([b[0], b[1]]) as usize,
            (3, 4) | (0, 4) if v.dtype == 3 => {
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
            (1, 1) => b[0] as usize,
            _ => {
                return Err(ConvertError::Format(format!(
                    "{name} is not an integer scalar"
                )))
            }
        })
    }

    /// Rows `rows` of a 1-D or 2-D float variable, as f32 values.
    fn rows_f32(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Vec<f32>, ConvertError> {
        let v = self.var(name)?;
        let row_len: usize = v.dims.iter().skip(1).product();
        let size = dtype_size(v.dtype)?;
        let b = self.bytes(v);
        let slice = b
            .get(rows.start * row_len * size..rows.end * row_len * size)
            .ok_or_else(|| ConvertError::Format(format!("{name}: rows {rows:?} out of range")))?;
        match v.dtype {
            0 => Ok(slice
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            4 => Ok(slice
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()),
            5 => Ok(slice
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect()),
            d => Err(ConvertError::Format(format!(
                "{name}: dtype {d} is not a float"
            ))),
        }
    }
}

/// Hyper-parameters of a whisper model, read from the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Encoder positions (1500).
    pub n_audio_ctx: usize,
    /// Encoder width.
    pub n_audio_state: usize,
    /// Encoder heads.
    pub n_audio_head: usize,
    /// Encoder layers.
    pub n_audio_layer: usize,
    /// Decoder positions (448).
    pub n_text_ctx: usize,
    /// Decoder width.
    pub n_text_state: usize,
    /// Decoder heads.
    pub n_text_head: usize,
    /// Decoder layers.
    pub n_text_layer: usize,
    /// Mel bins.
    pub n_mels: usize,
}

fn count_layers(m: &Ct2Model, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            m.variables
                .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

impl Hparams {
    /// Reads the hyper-parameters from a CTranslate2 whisper model.
    pub fn from_ct2(m: &Ct2Model) -> Result<Self, ConvertError> {
        let dims = |n: &str, i: usize| -> Result<usize, ConvertError> {
            m.var(n)?
                .dims
                .get(i)
                .copied()
                .ok_or_else(|| ConvertError::Format(format!("{n} has no dim {i}")))
        };
        Ok(Self {
            n_vocab: dims("decoder/embeddings/weight", 0)?,
            n_audio_ctx: dims("encoder/position_encodings/encodings", 0)?,
            n_audio_state: dims("encoder/conv1/weight", 0)?,
            n_audio_head: m.scalar("encoder/num_heads")?,
            n_audio_layer: count_layers(m, "encoder"),
            n_text_ctx: dims("decoder/position_encodings/encodings", 0)?,
            n_text_state: dims("decoder/embeddings/weight", 1)?,
            n_text_head: m.scalar("decoder/num_heads")?,
            n_text_layer: count_layers(m, "decoder"),
            n_mels: dims("encoder/conv1/weight", 1)?,
        })
    }
}

/// GPT-2's byte ↔ printable-character table, inverted: the character a
/// byte-level BPE token string uses for each byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .iter()
        .zip(&chars)
        .filter_map(|(&b, &c)| char::from_u32(c).map(|c| (c, b as u8)))
        .collect()
}

/// The regular (non-special) tokens of `tokenizer.json`, in id order, as bytes.
pub fn vocabulary(tokenizer_json: &str) -> Result<Vec<Vec<u8>>, ConvertError> {
    let t: serde_json::Value =
        serde_json::from_str(tokenizer_json).map_err(|e| ConvertError::Tokenizer(e.to_string()))?;
    let vocab = t
        .pointer("/model/vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| ConvertError::Tokenizer("no model.vocab".into()))?;
    let first_special =
        t.get("added_tokens")
            .and_then(|a| a.as_array())
            .and_then(|a| {
                a.iter()
                    .filter_map(|x| x.get("id").and_then(|i| i.as_u64()))
                    .min()
            })
            .ok_or_else(|| ConvertError::Tokenizer("no added_tokens".into()))? as usize;
    let map = unicode_to_byte();
    let mut tokens = vec![None; first_special];
    for (text, id) in vocab {
        let Some(id) = id.as_u64().map(|i| i as usize) else {
            continue;
        };
        if id < first_special {
            let bytes: Option<Vec<u8>> = text.chars().map(|c| map.get(&c).copied()).collect();
            tokens[id] =
                Some(bytes.ok_or_else(|| {
                    ConvertError::Tokenizer(format!("token {id} is not byte-level"))
                })?);
        }
    }
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| ConvertError::Tokenizer(format!("no token with id {i}"))))
        .collect()
}

/// How the weight matrices are stored (vectors stay f32, convolutions f16,
/// as whisper.cpp's loader expects for each file type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// Half precision: the reference layout.
    F16,
    /// 8-bit blocks of 32 with an f16 scale (34 bytes a block).
    Q8_0,
    /// 5-bit blocks of 32 with an f16 scale and the fifth bits packed
    /// apart (22 bytes a block).
    Q5_0,
}

impl Quant {
    /// By name: `f16`, `q8_0`, `q5_0`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f16" => Some(Self::F16),
            "q8_0" => Some(Self::Q8_0),
            "q5_0" => Some(Self::Q5_0),
            _ => None,
        }
    }

    /// ggml's file type in the header (quantized types carry ggml's
    /// quantization version × 1000, as ggml's own tools write them).
    fn ftype(self) -> usize {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 2007,
            Self::Q5_0 => 2008,
        }
    }

    /// ggml's tensor type id.
    fn tensor_type(self) -> usize {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::Q5_0 => 6,
        }
    }
}

/// One block of 32 as q8_0: scale max|x|/127, values rounded to i8.
fn q8_0_block(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    for &v in x {
        out.push((v * inv).round() as i8 as u8);
    }
}

/// One block of 32 as q5_0: the value of largest magnitude maps to -16;
/// each value is stored as 0..=31 (low nibbles in `qs`, fifth bits in a
/// 32-bit `qh`; element j and j+16 share a byte of `qs`).
fn q5_0_block(x: &[f32], out: &mut Vec<u8>) {
    let max = x
        .iter()
        .copied()
        .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -16.0;
    let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| ((v * inv + 16.5) as i32).clamp(0, 31) as u32;
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let (a, b) = (q(x[j]), q(x[j + 16]));
        qs[j] = ((a & 0x0F) | ((b & 0x0F) << 4)) as u8;
        qh |= ((a >> 4) & 1) << j;
        qh |= ((b >> 4) & 1) << (j + 16);
    }
    out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

struct Out<W: Write> {
    w: W,
    written: u64,
    tensors: usize,
    /// How 2-D weight matrices are stored.
    matrix: Quant,
}

impl<W: Write> Out<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.written += b.len() as u64;
        self.w.write_all(b)
    }
    fn i32(&mut self, v: usize) -> std::io::Result<()> {
        self.bytes(&(v as i32).to_le_bytes())
    }
    /// One tensor: `dims` in PyTorch order (written reversed, ggml-style).
    fn tensor(
        &mut self,
        name: &str,
        dims: &[usize],
        values: &[f32],
        f16: bool,
    ) -> std::io::Result<()> {
        // Matrices in the file's type; convolutions (3-D) stay f16.
        let quant = match (f16, dims.len()) {
            (false, _) => None,
            (true, 2) if values.len().is_multiple_of(32) => Some(self.matrix),
            (true, _) => Some(Quant::F16),
        };
        self.i32(dims.len())?;
        self.i32(name.len())?;
        self.i32(quant.map_or(0, Quant::tensor_type))?;
        for d in dims.iter().rev() {
            self.i32(*d)?;
        }
        self.bytes(name.as_bytes())?;
        let mut buf = Vec::with_capacity(values.len() * 4);
        match quant {
            None => values
                .iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
            Some(Quant::F16) => values
                .iter()
                .for_each(|&v| buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
            Some(Quant::Q8_0) => values.chunks(32).for_each(|b| q8_0_block(b, &mut buf)),
            Some(Quant::Q5_0) => values.chunks(32).for_each(|b| q5_0_block(b, &mut buf)),
        }
        self.tensors += 1;
        self.bytes(&buf)
    }
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Hyper-parameters.
    pub hparams: Hparams,
    /// Tokens written.
    pub tokens: usize,
    /// Tensors written.
    pub tensors: usize,
    /// File size.
    pub bytes: u64,
}

/// Converts the CTranslate2 model in `ct2_dir` (`model.bin`,
/// `tokenizer.json`) to a ggml file at `out` (written to a temporary file
/// and renamed, so a partial file never appears under the final name).
pub fn convert(ct2_dir: &Path, out: &Path) -> Result<ConvertReport, ConvertError> {
    convert_as(ct2_dir, out, Quant::F16)
}

/// [`convert`] with the weight matrices stored as `quant`.
pub fn convert_as(ct2_dir: &Path, out: &Path, quant: Quant) -> Result<ConvertReport, ConvertError> {
    let model = Ct2Model::open(&ct2_dir.join("model.bin"))?;
    if model.spec != "WhisperSpec" {
        return Err(ConvertError::Format(format!(
            "spec {}, expected WhisperSpec",
            model.spec
        )));
    }
    let tok_path = ct2_dir.join("tokenizer.json");
    let tokens = vocabulary(&std::fs::read_to_string(&tok_path).map_err(io(&tok_path))?)?;
    let hp = Hparams::from_ct2(&model)?;
    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut o = Out {
        w: BufWriter::with_capacity(1 << 20, file),
        written: 0,
        tensors: 0,
        matrix: quant,
    };
    write_ggml(&model, &hp, &tokens, &mut o).map_err(io(&tmp))?;
    let (bytes, tensors) = (o.written, o.tensors);
    o.w.into_inner()
        .map_err(|e| ConvertError::Io {
            path: tmp.display().to_string(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(ConvertReport {
        hparams: hp,
        tokens: tokens.len(),
        tensors,
        bytes,
    })
}

fn write_ggml<W: Write>(
    m: &Ct2Model,
    hp: &Hparams,
    tokens: &[Vec<u8>],
    o: &mut Out<W>,
) -> std::io::Result<()> {
    let fmt = |e: ConvertError| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    o.bytes(&GGML_MAGIC.to_le_bytes())?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        o.matrix.ftype(),
    ] {
        o.i32(v)?;
    }
    let filters = mel::filterbank(16000, 400, hp.n_mels);
    o.i32(hp.n_mels)?;
    o.i32(201)?;
    for f in &filters {
        o.bytes(&f.to_le_bytes())?;
    }
    o.i32(tokens.len())?;
    for t in tokens {
        o.i32(t.len())?;
        o.bytes(t)?;
    }
    let all = |name: &str| -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
        let v = m.var(name)?;
        Ok((
            v.dims.clone(),
            m.rows_f32(name, 0..v.dims.first().copied().unwrap_or(1))?,
        ))
    };
    // A full variable under a new name; matrices f16.
    let mut copy = |o: &mut Out<W>, from: &str, to: &str| -> std::io::Result<()> {
        let (dims, vals) = all(from).map_err(fmt)?;
        o.tensor(to, &dims, &vals, dims.len() >= 2)
    };
    let (enc_pos_dims, enc_pos) = all("encoder/position_encodings/encodings").map_err(fmt)?;
    o.tensor(
        "encoder.positional_embedding",
        &enc_pos_dims,
        &enc_pos,
        false,
    )?;
    for c in ["conv1", "conv2"] {
        copy(
            o,
            &format!("encoder/{c}/weight"),
            &format!("encoder.{c}.weight"),
        )?;
        let (dims, vals) = all(&format!("encoder/{c}/bias")).map_err(fmt)?;
        o.tensor(&format!("encoder.{c}.bias"), &[dims[0], 1], &vals, false)?;
    }
    for i in 0..hp.n_audio_layer {
        let (src, dst) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        block(m, o, &mut copy, &src, &dst, hp.n_audio_state, false)?;
    }
    copy(o, "encoder/layer_norm/gamma", "encoder.ln_post.weight")?;
    copy(o, "encoder/layer_norm/beta", "encoder.ln_post.bias")?;
    let (dec_pos_dims, dec_pos) = all("decoder/position_encodings/encodings").map_err(fmt)?;
    o.tensor(
        "decoder.positional_embedding",
        &dec_pos_dims,
        &dec_pos,
        false,
    )?;
    copy(
        o,
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight",
    )?;
    for i in 0..hp.n_text_layer {
        let (src, dst) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        block(m, o, &mut copy, &src, &dst, hp.n_text_state, true)?;
    }
    copy(o, "decoder/layer_norm/gamma", "decoder.ln.weight")?;
    copy(o, "decoder/layer_norm/beta", "decoder.ln.bias")?;
    o.w.flush()
}

/// One transformer block: self-attention (and, in the decoder,
/// cross-attention), each with its layer norm, then the MLP.
fn block<W: Write>(
    m: &Ct2Model,
    o: &mut Out<W>,
    copy: &mut impl FnMut(&mut Out<W>, &str, &str) -> std::io::Result<()>,
    src: &str,
    dst: &str,
    n: usize,
    cross: bool,
) -> std::io::Result<()> {
    let fmt = |e: ConvertError| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
    let parts: &[(&str, &str, bool)] = if cross {
        &[
            ("self_attention", "attn", true),
            ("attention", "cross_attn", false),
        ]
    } else {
        &[("self_attention", "attn", true)]
    };
    for &(from, to, fused) in parts {
        split_attention(
            m,
            o,
            &format!("{src}/{from}"),
            &format!("{dst}.{to}"),
            n,
            fused,
        )
        .map_err(fmt)??;
        copy(
            o,
            &format!("{src}/{from}/layer_norm/gamma"),
            &format!("{dst}.{to}_ln.weight"),
        )?;
        copy(
            o,
            &format!("{src}/{from}/layer_norm/beta"),
            &format!("{dst}.{to}_ln.bias"),
        )?;
    }
    ffn(o, copy, src, dst)
}

fn ffn<W: Write>(
    o: &mut Out<W>,
    copy: &mut impl FnMut(&mut Out<W>, &str, &str) -> std::io::Result<()>,
    src: &str,
    dst: &str,
) -> std::io::Result<()> {
    copy(
        o,
        &format!("{src}/ffn/linear_0/weight"),
        &format!("{dst}.mlp.0.weight"),
    )?;
    copy(
        o,
        &format!("{src}/ffn/linear_0/bias"),
        &format!("{dst}.mlp.0.bias"),
    )?;
    copy(
        o,
        &format!("{src}/ffn/linear_1/weight"),
        &format!("{dst}.mlp.2.weight"),
    )?;
    copy(
        o,
        &format!("{src}/ffn/linear_1/bias"),
        &format!("{dst}.mlp.2.bias"),
    )?;
    copy(
        o,
        &format!("{src}/ffn/layer_norm/gamma"),
        &format!("{dst}.mlp_ln.weight"),
    )?;
    copy(
        o,
        &format!("{src}/ffn/layer_norm/beta"),
        &format!("{dst}.mlp_ln.bias"),
    )
}

/// Writes query, key (no bias), value and out of one attention block.
/// Self-attention: `linear_0` = q|k|v, `linear_1` = out. Cross-attention:
/// `linear_0` = q, `linear_1` = k|v, `linear_2` = out.
fn split_attention<W: Write>(
    m: &Ct2Model,
    o: &mut Out<W>,
    src: &str,
    dst: &str,
    n: usize,
    fused_qkv: bool,
) -> Result<std::io::Result<()>, ConvertError> {
    let w = |name: &str, rows: std::ops::Range<usize>| m.rows_f32(&format!("{src}/{name}"), rows);
    let (q_w, q_b, kv, out) = if fused_qkv {
        (
            w("linear_0/weight", 0..n)?,
            w("linear_0/bias", 0..n)?,
            ("linear_0", n),
            "linear_1",
        )
    } else {
        (
            w("linear_0/weight", 0..n)?,
            w("linear_0/bias", 0..n)?,
            ("linear_1", 0),
            "linear_2",
        )
    };
    let (kv_name, base) = kv;
    let k_w = w(&format!("{kv_name}/weight"), base..base + n)?;
    let v_w = w(&format!("{kv_name}/weight"), base + n..base + 2 * n)?;
    let v_b = w(&format!("{kv_name}/bias"), base + n..base + 2 * n)?;
    let o_w = w(&format!("{out}/weight"), 0..n)?;
    let o_b = w(&format!("{out}/bias"), 0..n)?;
    Ok((|| {
        o.tensor(&format!("{dst}.query.weight"), &[n, n], &q_w, true)?;
        o.tensor(&format!("{dst}.query.bias"), &[n], &q_b, false)?;
        o.tensor(&format!("{dst}.key.weight"), &[n, n], &k_w, true)?;
        o.tensor(&format!("{dst}.value.weight"), &[n, n], &v_w, true)?;
        o.tensor(&format!("{dst}.value.bias"), &[n], &v_b, false)?;
        o.tensor(&format!("{dst}.out.weight"), &[n, n], &o_w, true)?;
        o.tensor(&format!("{dst}.out.bias"), &[n], &o_b, false)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_blocks_decode_within_half_a_step() {
        let x: Vec<f32> = (0..32)
            .map(|i| ((i as f32) * 0.37).sin() * 0.8 - 0.1)
            .collect();
        let mut q8 = Vec::new();
        q8_0_block(&x, &mut q8);
        assert_eq!(q8.len(), 34);
        let d = half::f16::from_le_bytes([q8[0], q8[1]]).to_f32();
        for (i, &v) in x.iter().enumerate() {
            let back = d * (q8[2 + i] as i8) as f32;
            assert!(
                (back - v).abs() <= d * 0.51 + 1e-3,
                "q8_0 {i}: {v} -> {back}"
            );
        }
        let mut q5 = Vec::new();
        q5_0_block(&x, &mut q5);
        assert_eq!(q5.len(), 22);
        let d = half::f16::from_le_bytes([q5[0], q5[1]]).to_f32();
        let qh = u32::from_le_bytes([q5[2], q5[3], q5[4], q5[5]]);
        for j in 0..32 {
            let nibble = if j < 16 {
                q5[6 + j] & 0x0F
            } else {
                q5[6 + j - 16] >> 4
            };
            let q = u32::from(nibble) | (((qh >> j) & 1) << 4);
            let back = d * (q as f32 - 16.0);
            assert!(
                (back - x[j]).abs() <= d.abs() * 0.51 + 1e-3,
                "q5_0 {j}: {} -> {back}",
                x[j]
            );
        }
        // A block of zeros stays zero (no division by a zero scale).
        let mut z = Vec::new();
        q8_0_block(&[0.0; 32], &mut z);
        assert!(z[2..].iter().all(|&b| b == 0));
        assert_eq!(Quant::parse("q8_0"), Some(Quant::Q8_0));
        assert_eq!(Quant::parse("q4_k"), None);
    }

    #[test]
    fn byte_level_table_round_trips_all_bytes() {
        let map = unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'!'], b'!');
        assert_eq!(map[&'Ċ'], b'\n');
    }

    #[test]
    fn malformed_inputs_are_clear_errors() {
        assert!(matches!(
            Ct2Model::parse(vec![]),
            Err(ConvertError::Format(_))
        ));
        assert!(
            matches!(Ct2Model::parse(vec![7, 0, 0, 0]), Err(ConvertError::Format(m)) if m.contains("version"))
        );
        // Version 6, spec "X", revision, one variable whose byte count lies.
        let mut bad = vec![6, 0, 0, 0, 2, 0, b'X', 0, 1, 0, 0, 0, 1, 0, 0, 0];
        bad.extend_from_slice(&[2, 0, b'a', 0, 1, 4, 0, 0, 0, 4, 99, 0, 0, 0]);
        assert!(
            matches!(Ct2Model::parse(bad), Err(ConvertError::Format(m)) if m.contains("bytes for shape"))
        );
        assert!(matches!(vocabulary("{}"), Err(ConvertError::Tokenizer(_))));
        assert!(matches!(
            vocabulary("not json"),
            Err(ConvertError::Tokenizer(_))
        ));
    }
}
