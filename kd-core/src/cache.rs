//! A frozen teacher's outputs, computed once per data set.
//!
//! Without augmentation a sample's teacher outputs never change, yet a
//! distillation epoch spends most of its time in the teacher's forward pass.
//! [`CachedTeacher`] runs the teacher once over the training set, keeps the
//! logits and the taps the method needs, and serves each batch by index.
use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::data::Dataset;
use crate::eval::EVAL_BATCH;
use crate::model::{Outputs, Teacher};
use crate::Result;

pub struct CachedTeacher {
    logits: Tensor,
    taps: BTreeMap<String, Tensor>,
    device: Device,
}

impl CachedTeacher {
    /// Bytes the cache would take for `data` with `taps`, from one probe image.
    pub fn estimate_bytes(
        teacher: &dyn Teacher,
        data: &Dataset,
        taps: &[&str],
        device: &Device,
    ) -> Result<usize> {
        let probe = teacher.outputs(&data.batch(&[0], device)?)?;
        let mut per_sample = probe.logits.elem_count();
        for t in taps {
            per_sample += probe.tap(t)?.elem_count();
        }
        Ok(per_sample * 4 * data.len())
    }

    /// Runs `teacher` over all of `data` in order and keeps logits and `taps`.
    pub fn build(
        teacher: &dyn Teacher,
        data: &Dataset,
        taps: &[&str],
        device: &Device,
    ) -> Result<Self> {
        let (mut logits, mut kept): (Vec<Tensor>, BTreeMap<String, Vec<Tensor>>) =
            (Vec::new(), BTreeMap::new());
        for indices in data.batch_indices(EVAL_BATCH, None) {
            let out = teacher.outputs(&data.batch(&indices, device)?)?;
            logits.push(out.logits.clone());
            for t in taps {
                kept.entry(t.to_string())
                    .or_default()
                    .push(out.tap(t)?.clone());
            }
        }
        Ok(Self {
            logits: Tensor::cat(&logits, 0)?,
            taps: kept
                .into_iter()
                .map(|(k, v)| Ok((k, Tensor::cat(&v, 0)?)))
                .collect::<Result<_>>()?,
            device: device.clone(),
        })
    }

    pub fn bytes(&self) -> usize {
        4 * (self.logits.elem_count() + self.taps.values().map(Tensor::elem_count).sum::<usize>())
    }

    /// Whether this cache holds every tap in `taps`.
    pub fn has_taps(&self, taps: &[&str]) -> bool {
        taps.iter().all(|t| self.taps.contains_key(*t))
    }
}

impl Teacher for CachedTeacher {
    fn outputs(&self, batch: &crate::data::Batch) -> Result<Outputs> {
        let idx: Vec<u32> = batch.indices.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, batch.indices.len(), &self.device)?;
        Ok(Outputs {
            logits: self.logits.index_select(&idx, 0)?,
            taps: self
                .taps
                .iter()
                .map(|(k, t)| Ok((k.clone(), t.index_select(&idx, 0)?)))
                .collect::<Result<_>>()?,
        })
    }
}
