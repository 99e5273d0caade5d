//! The arena planner: places every intermediate tensor and every kernel's scratch buffer at an
//! offset of one arena, so that buffers live at the same time never overlap.
//!
//! Contract: the caller describes each buffer by its size in bytes and its live interval
//! `[first, last]` in node steps (inclusive: a node's inputs and outputs are all live at its
//! step, so a kernel never writes over its own inputs). Offsets are multiples of [`ALIGN`].
//! Placement is greedy by size (largest first), each buffer going into the lowest-waste gap among
//! the buffers already placed that overlap it in time (best fit).
//!
//! The lower bound reported is the largest total size of tensors live at one step plus the
//! largest scratch of any one kernel (the definition); the real optimum can be below it
//! when the largest scratch is not needed at the busiest step.

/// Alignment of every buffer in the arena (a cache line).
pub const ALIGN: usize = 64;

/// One buffer to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub size: usize,
    /// First step the buffer is live (the node that writes it).
    pub first: usize,
    /// Last step the buffer is live (its last reader), `>= first`.
    pub last: usize,
    /// Scratch of one kernel (counted separately in the lower bound).
    pub scratch: bool,
}

/// The placement of a list of buffers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Offset of each buffer, in input order.
    pub offsets: Vec<usize>,
    /// Arena size in bytes (a multiple of [`ALIGN`]).
    pub size: usize,
    /// Largest total of simultaneously live tensors plus the largest scratch of one kernel.
    pub lower_bound: usize,
}

fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places `buffers` (see the module documentation).
pub fn plan(buffers: &[Buffer]) -> MemoryPlan {
    let steps = buffers.iter().map(|b| b.last + 1).max().unwrap_or(0);
    let mut live = vec![0usize; steps];
    let mut max_scratch = 0usize;
    for b in buffers {
        if b.scratch {
            max_scratch = max_scratch.max(b.size);
        } else {
            for l in &mut live[b.first..=b.last] {
                *l += b.size;
            }
        }
    }
    let lower_bound = live.iter().copied().max().unwrap_or(0) + max_scratch;

    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&buffers[a], &buffers[b]);
        y.size
            .cmp(&x.size)
            .then((y.last - y.first).cmp(&(x.last - x.first)))
            .then(a.cmp(&b))
    });
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut size = 0usize;
    for i in order {
        let b = &buffers[i];
        let need = align_up(b.size.max(1));
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].first <= b.last && b.first <= buffers[j].last)
            .map(|&j| (offsets[j], offsets[j] + align_up(buffers[j].size.max(1))))
            .collect();
        busy.sort();
        // Best fit among the gaps between busy ranges; else after the last one.
        let mut best: Option<(usize, usize)> = None; // (waste, offset)
        let mut cursor = 0usize;
        for &(start, end) in &busy {
            if start > cursor && start - cursor >= need {
                let waste = start - cursor - need;
                if best.is_none_or(|(w, _)| waste < w) {
                    best = Some((waste, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let off = best.map(|(_, o)| o).unwrap_or(cursor);
        offsets[i] = off;
        size = size.max(off + need);
        placed.push(i);
    }
    MemoryPlan {
        offsets,
        size,
        lower_bound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(size: usize, first: usize, last: usize) -> Buffer {
        Buffer {
            size,
            first,
            last,
            scratch: false,
        }
    }

    /// No two buffers that are live at the same step overlap in memory.
    fn check_disjoint(bufs: &[Buffer], p: &MemoryPlan) {
        for i in 0..bufs.len() {
            for j in i + 1..bufs.len() {
                let (a, b) = (&bufs[i], &bufs[j]);
                if a.first <= b.last && b.first <= a.last {
                    let (ai, bi) = (p.offsets[i], p.offsets[j]);
                    assert!(
                        ai + a.size <= bi || bi + b.size <= ai,
                        "buffers {i} and {j} overlap"
                    );
                }
            }
        }
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(p.offsets[i] % ALIGN, 0);
            assert!(p.offsets[i] + b.size <= p.size);
        }
    }

    #[test]
    fn chain_reuses_memory() {
        // a -> b -> c -> d: only two neighbours are live at a time.
        let bufs = vec![
            buf(1024, 0, 1),
            buf(1024, 1, 2),
            buf(1024, 2, 3),
            buf(1024, 3, 4),
        ];
        let p = plan(&bufs);
        check_disjoint(&bufs, &p);
        assert_eq!(p.size, 2048);
        assert_eq!(p.lower_bound, 2048);
    }

    #[test]
    fn scratch_counts_separately() {
        let mut s = buf(4096, 1, 1);
        s.scratch = true;
        let bufs = vec![buf(1000, 0, 1), buf(1000, 1, 2), s];
        let p = plan(&bufs);
        check_disjoint(&bufs, &p);
        assert_eq!(p.lower_bound, 2000 + 4096);
        assert!(p.size <= p.lower_bound * 12 / 10 + ALIGN * 3);
    }

    #[test]
    fn random_intervals_are_disjoint_and_near_the_bound() {
        let mut seed = 12345u64;
        let mut rnd = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        for _ in 0..50 {
            let n = 1 + rnd(40);
            let bufs: Vec<Buffer> = (0..n)
                .map(|i| {
                    let len = rnd(5);
                    buf(64 * (1 + rnd(100)), i, i + len)
                })
                .collect();
            let p = plan(&bufs);
            check_disjoint(&bufs, &p);
            assert!(p.size >= p.lower_bound);
        }
    }
}
