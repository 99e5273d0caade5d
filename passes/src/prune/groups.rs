//! Channel dependency groups (docs/PRUNING.md "Dependency groups"): which channel axes of a
//! graph must shrink together when whole channels are removed.
//!
//! Every Conv (group 1), Gemm and MatMul by constant weights creates a *space*: its output
//! channels. A grouped convolution's space is *blocked*: its channels fall in one block per
//! convolution group, and every block loses as many; the blocks of its input are *tied*: they
//! lose the same positions (its weights' input-channel slices are shared by every group). Walking the nodes in order, each value gets a [`Layout`]: which spaces its channel
//! axis is made of (a Concat along that axis joins them; a Flatten into a Gemm makes each channel
//! a block of features). Ops that compute channel by channel pass the layout on; ops that combine
//! two channel-laid-out tensors element-wise (a residual Add, the Mul of a squeeze-and-excitation
//! block) *unify* their spaces; a depthwise convolution passes its input's channels through. Each
//! use of a laid-out tensor that the walk understands records a [`Member`]: a constant whose
//! slices along one axis are those channels (the producer's filters, a consumer's input slices, a
//! BatchNorm's parameters, a per-channel constant operand), or an attribute to rewrite. A space
//! that reaches a use the walk does not understand, or a graph output, is *fixed*. The union of
//! unified spaces (petgraph's union-find) is a [`Group`]: its channels are removed together, by
//! index, from every member.

use kestrel_ir::{BinaryOp, Graph, NodeId, Op, ValueId};
use petgraph::unionfind::UnionFind;

/// Index of a [`Space`] in [`Analysis::spaces`].
pub type SpaceId = usize;

/// The output channels of one producer.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    pub size: usize,
    /// The Conv/Gemm/MatMul whose output channels these are; `None` for the stand-in of an
    /// untracked tensor concatenated with tracked ones (always fixed).
    pub producer: Option<NodeId>,
    /// The channels fall in this many equal consecutive blocks (the filters of each group of a
    /// grouped convolution), each losing as many channels as the others; 1 for an ordinary
    /// space.
    pub blocks: usize,
    /// The channels fall in this many equal consecutive blocks that lose the same positions:
    /// they feed a grouped convolution whose input-channel weight slices every block shares;
    /// 1 for a space that feeds none.
    pub tie: usize,
}

/// One space's channels along a tensor's channel axis, each covering `repeat` consecutive
/// positions (more than 1 after a Flatten: a channel's block of features).
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub space: SpaceId,
    pub repeat: usize,
}

/// How a tensor's channel axis `axis` is made of spaces, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub axis: usize,
    pub segments: Vec<Segment>,
}

/// What a [`Member`] is to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The producer's weights along their output-channel axis (counted for importance).
    Filters,
    /// A consumer's weights along their input-channel axis.
    InputSlices,
    /// A grouped convolution's weights along their input-channel axis: the layout's positions
    /// fall in `blocks` equal blocks (one per convolution group) that keep the same positions,
    /// and the axis holds one block's.
    GroupedInputSlices { blocks: usize },
    /// A depthwise convolution's filters, one per channel (counted for importance).
    DepthwiseFilters,
    /// The producer's bias (counted for importance with the filters).
    Bias,
    /// A BatchNorm's scale (`--importance bn`).
    BatchNormScale,
    /// Any other constant sliced with the channels: biases, BatchNorm's bias, mean and
    /// variance, a per-channel constant operand.
    Parameter,
}

/// A change that removing channels makes to a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Constant input `input` sliced along `axis`, whose positions `layout` describes.
    Slice {
        input: usize,
        axis: usize,
        layout: Layout,
        role: Role,
    },
    /// A depthwise convolution's `group` becomes its new channel count (`layout`: its input's).
    Group { layout: Layout },
    /// A Split along the channel axis: its sizes recounted from `layout` (the input's), whose
    /// positions its outputs take in order, `extents[i]` of them for output `i`.
    SplitSizes { layout: Layout, extents: Vec<usize> },
    /// A Reshape's constant shape: entry `index` becomes the kept positions of `layout`.
    ReshapeDim { index: usize, layout: Layout },
}

/// An [`Edit`] of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub node: NodeId,
    pub edit: Edit,
}

/// Spaces whose channels are removed together.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub spaces: Vec<SpaceId>,
    /// The channel count every space of the group has.
    pub size: usize,
    /// The channels fall in this many equal consecutive blocks, each losing as many channels
    /// as the others (the [`Space::blocks`] and [`Space::tie`] above 1 of its spaces, which
    /// must agree); 1 for an ordinary group.
    pub blocks: usize,
    /// The blocks lose the same positions (a space of the group has a [`Space::tie`]).
    pub tied: bool,
    /// Why the group cannot shrink, if it cannot.
    pub fixed: Option<String>,
}

/// The result of [`analyze`].
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub spaces: Vec<Space>,
    /// The group of each space.
    pub group_of: Vec<usize>,
    pub groups: Vec<Group>,
    pub members: Vec<Member>,
}

impl Analysis {
    /// The nodes producing the spaces of group `g`, in node order.
    pub fn producers(&self, g: usize) -> Vec<NodeId> {
        let mut p: Vec<NodeId> = self.groups[g]
            .spaces
            .iter()
            .filter_map(|&s| self.spaces[s].producer)
            .collect();
        p.sort();
        p
    }
}

struct Walk<'g> {
    g: &'g Graph,
    layouts: Vec<Option<Layout>>,
    spaces: Vec<Space>,
    fixed: Vec<Option<String>>,
    unions: Vec<(SpaceId, SpaceId)>,
    members: Vec<Member>,
}

fn known_dims(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    g.ty(v).dims()
}

impl Walk<'_> {
    fn layout(&self, v: ValueId) -> Option<Layout> {
        self.layouts[v.index()].clone()
    }

    fn new_space(&mut self, size: usize, producer: Option<NodeId>) -> SpaceId {
        self.spaces.push(Space {
            size,
            producer,
            blocks: 1,
            tie: 1,
        });
        self.fixed.push(None);
        self.spaces.len() - 1
    }

    fn fix_space(&mut self, s: SpaceId, why: &str) {
        if self.fixed[s].is_none() {
            self.fixed[s] = Some(why.to_string());
        }
    }

    fn fix(&mut self, v: ValueId, why: &str) {
        if let Some(l) = self.layout(v) {
            for seg in &l.segments {
                self.fix_space(seg.space, why);
            }
        }
    }

    /// Unifies two layouts of one channel axis: segment by segment when their structures agree,
    /// else every space of both is fixed.
    fn unify(&mut self, a: &Layout, b: &Layout, why: &str) {
        let same = a.segments.len() == b.segments.len()
            && a.segments.iter().zip(&b.segments).all(|(x, y)| {
                x.repeat == y.repeat && self.spaces[x.space].size == self.spaces[y.space].size
            });
        if same {
            for (x, y) in a.segments.iter().zip(&b.segments) {
                self.unions.push((x.space, y.space));
            }
        } else {
            for s in a.segments.iter().chain(&b.segments) {
                self.fix_space(s.space, why);
            }
        }
    }

    fn set(&mut self, v: ValueId, l: Option<Layout>) {
        self.layouts[v.index()] = l;
    }

    fn member(&mut self, node: NodeId, edit: Edit) {
        self.members.push(Member { node, edit });
    }

    /// A fresh space for the output channels of `node` along `axis` (extent `size`).
    fn produce(&mut self, node: NodeId, out: ValueId, axis: usize, size: usize) -> Layout {
        let s = self.new_space(size, Some(node));
        let l = Layout {
            axis,
            segments: vec![Segment {
                space: s,
                repeat: 1,
            }],
        };
        self.set(out, Some(l.clone()));
        l
    }

    /// Every input laid out: fixed (a use the walk does not understand); outputs untracked.
    fn opaque(&mut self, id: NodeId, why: &str) {
        let node = self.g.node(id);
        for &i in &node.inputs {
            self.fix(i, why);
        }
    }

    fn visit(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let ins = &node.inputs;
        let out = node.outputs[0];
        let lx = ins.first().and_then(|&x| self.layout(x));
        match &node.op {
            Op::Conv(a) => self.conv(id, a, lx),
            Op::Gemm(a) => {
                let b = ins.get(1).and_then(|&b| known_dims(g, b));
                let weights_const = ins.get(1).is_some_and(|&b| g.const_data(b).is_some());
                let (Some(b), true, false, true, None) = (
                    b,
                    weights_const,
                    a.trans_a,
                    a.epilogue.is_none(),
                    a.integer.as_ref(),
                ) else {
                    return self.opaque(id, "a gemm with computed weights or a fused epilogue");
                };
                let (k_axis, n_axis) = if a.trans_b { (1, 0) } else { (0, 1) };
                if let Some(l) = lx {
                    if l.axis != 1 {
                        return self.opaque(id, "a gemm over a non-channel axis");
                    }
                    self.member(
                        id,
                        Edit::Slice {
                            input: 1,
                            axis: k_axis,
                            layout: l,
                            role: Role::InputSlices,
                        },
                    );
                }
                let n = b[n_axis];
                let l = self.produce(id, out, 1, n);
                self.member(
                    id,
                    Edit::Slice {
                        input: 1,
                        axis: n_axis,
                        layout: l.clone(),
                        role: Role::Filters,
                    },
                );
                if let Some(&c) = ins.get(2) {
                    self.channel_operand(id, 2, c, &l, out, Role::Bias);
                }
            }
            Op::MatMul => {
                let b = ins.get(1).and_then(|&b| known_dims(g, b));
                let weights_const = ins.get(1).is_some_and(|&b| g.const_data(b).is_some());
                let rank = g.ty(ins[0]).rank();
                match b {
                    Some(b) if weights_const && b.len() == 2 && rank >= 2 => {
                        if let Some(l) = lx {
                            if l.axis != rank - 1 {
                                return self.opaque(id, "a matmul over a non-channel axis");
                            }
                            self.member(
                                id,
                                Edit::Slice {
                                    input: 1,
                                    axis: 0,
                                    layout: l,
                                    role: Role::InputSlices,
                                },
                            );
                        }
                        let l = self.produce(id, out, rank - 1, b[1]);
                        self.member(
                            id,
                            Edit::Slice {
                                input: 1,
                                axis: 1,
                                layout: l,
                                role: Role::Filters,
                            },
                        );
                    }
                    _ => self.opaque(id, "a matmul of two computed tensors"),
                }
            }
            Op::BatchNorm { .. } => {
                let Some(l) = lx else { return };
                if l.axis != 1 {
                    return self.opaque(id, "a batch norm over a non-channel axis");
                }
                for input in 1..ins.len() {
                    if g.const_data(ins[input]).is_none() {
                        return self.opaque(id, "a batch norm with computed parameters");
                    }
                }
                for input in 1..ins.len() {
                    let role = if input == 1 {
                        Role::BatchNormScale
                    } else {
                        Role::Parameter
                    };
                    self.member(
                        id,
                        Edit::Slice {
                            input,
                            axis: 0,
                            layout: l.clone(),
                            role,
                        },
                    );
                }
                self.set(out, Some(l));
            }
            Op::Unary(_) | Op::Cast { .. } | Op::Identity => self.set(out, lx),
            Op::Pool(_) | Op::GlobalPool(_) => match lx {
                Some(l) if l.axis == 1 => self.set(out, Some(l)),
                Some(_) => self.opaque(id, "pooling over the channel axis"),
                None => {}
            },
            Op::Binary(_) | Op::Map(_) | Op::Where | Op::Clip => self.elementwise(id),
            Op::Concat { axis } => self.concat(id, *axis),
            Op::Split { axis, .. } => self.split(id, *axis),
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze | Op::Unsqueeze => {
                self.reshape(id)
            }
            Op::Transpose { perm } => {
                if let Some(l) = lx {
                    match perm.iter().position(|&p| p == l.axis) {
                        Some(j) => self.set(out, Some(Layout { axis: j, ..l })),
                        None => self.opaque(id, "a transpose"),
                    }
                }
            }
            Op::Softmax { axis } | Op::LogSoftmax { axis } => {
                if let Some(l) = lx {
                    let rank = g.ty(ins[0]).rank() as i64;
                    let a = if *axis < 0 { axis + rank } else { *axis };
                    if a as usize == l.axis {
                        return self.opaque(id, "a softmax over the channel axis");
                    }
                    self.set(out, Some(l));
                }
            }
            _ => self.opaque(id, "an op that mixes or reorders channels"),
        }
    }

    fn conv(&mut self, id: NodeId, a: &kestrel_ir::ConvAttrs, lx: Option<Layout>) {
        let g = self.g;
        let node = g.node(id);
        let ins = &node.inputs;
        let out = node.outputs[0];
        let w = known_dims(g, ins[1]);
        let ok = g.const_data(ins[1]).is_some()
            && a.epilogue.is_none()
            && a.integer.is_none()
            && ins.len() <= 3
            && ins.get(2).is_none_or(|&b| g.const_data(b).is_some());
        let (Some(w), true) = (w, ok) else {
            return self.opaque(
                id,
                "a convolution with computed weights or a fused epilogue",
            );
        };
        if let Some(l) = &lx {
            if l.axis != 1 {
                return self.opaque(id, "a convolution over a non-channel axis");
            }
        }
        let (m, per_group) = (w[0], w[1]);
        let channels = per_group * a.group;
        if a.group == 1 {
            if let Some(l) = lx {
                self.member(
                    id,
                    Edit::Slice {
                        input: 1,
                        axis: 1,
                        layout: l,
                        role: Role::InputSlices,
                    },
                );
            }
            let l = self.produce(id, out, 1, m);
            self.member(
                id,
                Edit::Slice {
                    input: 1,
                    axis: 0,
                    layout: l.clone(),
                    role: Role::Filters,
                },
            );
            if ins.len() == 3 {
                self.member(
                    id,
                    Edit::Slice {
                        input: 2,
                        axis: 0,
                        layout: l,
                        role: Role::Bias,
                    },
                );
            }
        } else if per_group == 1 && m == a.group && m == channels {
            // Depthwise: output channel c reads input channel c only.
            let Some(l) = lx else { return };
            self.member(
                id,
                Edit::Slice {
                    input: 1,
                    axis: 0,
                    layout: l.clone(),
                    role: Role::DepthwiseFilters,
                },
            );
            if ins.len() == 3 {
                self.member(
                    id,
                    Edit::Slice {
                        input: 2,
                        axis: 0,
                        layout: l.clone(),
                        role: Role::Bias,
                    },
                );
            }
            self.member(id, Edit::Group { layout: l.clone() });
            self.set(out, Some(l));
        } else {
            self.grouped_conv(id, a.group, m, per_group, lx);
        }
    }

    /// A grouped convolution (`groups` groups, `m` filters, `per_group` input channels each;
    /// not depthwise). Its filters are a space of `groups` blocks, the filters of each group;
    /// input channel `k·per_group + j` is read by slice `j` of the weights' axis 1 for the
    /// filters of group `k` only, so the input's blocks are tied (they lose the same `j`).
    fn grouped_conv(
        &mut self,
        id: NodeId,
        groups: usize,
        m: usize,
        per_group: usize,
        lx: Option<Layout>,
    ) {
        let node = self.g.node(id);
        let (x, out, has_bias) = (node.inputs[0], node.outputs[0], node.inputs.len() == 3);
        if !m.is_multiple_of(groups) {
            return self.opaque(id, "a grouped convolution of uneven groups");
        }
        if let Some(l) = lx {
            if per_group == 1 {
                self.fix(x, "a grouped convolution with one input channel per group");
            } else if self.tie_blocks(&l, groups, per_group) {
                self.member(
                    id,
                    Edit::Slice {
                        input: 1,
                        axis: 1,
                        layout: l,
                        role: Role::GroupedInputSlices { blocks: groups },
                    },
                );
            } else {
                self.fix(
                    x,
                    "a grouped convolution whose input groups are laid out differently",
                );
            }
        }
        let l = self.produce(id, out, 1, m);
        let s = l.segments[0].space;
        self.spaces[s].blocks = groups;
        if m == groups {
            self.fix_space(s, "a grouped convolution with one filter per group");
        }
        self.member(
            id,
            Edit::Slice {
                input: 1,
                axis: 0,
                layout: l.clone(),
                role: Role::Filters,
            },
        );
        if has_bias {
            self.member(
                id,
                Edit::Slice {
                    input: 2,
                    axis: 0,
                    layout: l,
                    role: Role::Bias,
                },
            );
        }
    }

    /// Ties the `blocks` consecutive blocks of `per_block` positions of `l` so that they lose
    /// the same positions. Either every segment spans the same number `n` of whole blocks
    /// (their spaces unified, each tied in `n` blocks when `n > 1`), or every block is whole
    /// segments of the same sizes in the same order (block by block, their spaces unified).
    /// False, with nothing recorded, for any other layout.
    fn tie_blocks(&mut self, l: &Layout, blocks: usize, per_block: usize) -> bool {
        let sizes: Vec<usize> = l
            .segments
            .iter()
            .map(|s| self.spaces[s.space].size)
            .collect();
        if l.segments.iter().any(|s| s.repeat != 1)
            || sizes.iter().sum::<usize>() != blocks * per_block
        {
            return false;
        }
        let first = l.segments[0].space;
        if sizes[0] >= per_block {
            let n = sizes[0] / per_block;
            let tie_ok = |sp: &Space| sp.tie == 1 || sp.tie == n || n == 1;
            if sizes.iter().any(|&z| z != n * per_block)
                || !l.segments.iter().all(|seg| tie_ok(&self.spaces[seg.space]))
            {
                return false;
            }
            for seg in &l.segments {
                if n > 1 {
                    self.spaces[seg.space].tie = n;
                }
                self.unions.push((first, seg.space));
            }
            return true;
        }
        // Cut the segments into blocks.
        let mut per: Vec<Vec<SpaceId>> = vec![Vec::new()];
        let mut filled = 0;
        for (seg, &z) in l.segments.iter().zip(&sizes) {
            if filled + z > per_block {
                return false;
            }
            per.last_mut().expect("one block open").push(seg.space);
            filled += z;
            if filled == per_block && per.len() < blocks {
                per.push(Vec::new());
                filled = 0;
            }
        }
        let shape =
            |b: &[SpaceId]| -> Vec<usize> { b.iter().map(|&s| self.spaces[s].size).collect() };
        if per.iter().any(|b| shape(b) != shape(&per[0])) {
            return false;
        }
        for b in &per[1..] {
            for (&x, &y) in per[0].iter().zip(b) {
                self.unions.push((x, y));
            }
        }
        true
    }

    /// Operand `input` of `id` against output layout `l` (output `out`): a constant with the
    /// channel axis sliced with it, a tensor laid out the same way (unified), or one that
    /// broadcasts along the channel axis (nothing to do).
    fn channel_operand(
        &mut self,
        id: NodeId,
        input: usize,
        v: ValueId,
        l: &Layout,
        out: ValueId,
        role: Role,
    ) {
        let g = self.g;
        let (Some(vd), Some(od)) = (known_dims(g, v), known_dims(g, out)) else {
            return self.fix(out, "unknown shapes");
        };
        // Numpy broadcasting aligns the trailing axes.
        let offset = od.len() as i64 - vd.len() as i64;
        let axis = l.axis as i64 - offset;
        if axis < 0 || vd[axis as usize] == 1 {
            return;
        }
        let axis = axis as usize;
        if g.const_data(v).is_some() {
            self.member(
                id,
                Edit::Slice {
                    input,
                    axis,
                    layout: l.clone(),
                    role,
                },
            );
            return;
        }
        match self.layout(v) {
            Some(lv) if lv.axis == axis => self.unify(l, &lv, "a mismatched element-wise operand"),
            _ => {
                self.fix(out, "an element-wise operand laid out differently");
                self.fix(v, "an element-wise operand laid out differently");
            }
        }
    }

    fn elementwise(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let out = node.outputs[0];
        let Some(od) = known_dims(g, out) else {
            return self.opaque(id, "unknown shapes");
        };
        // The layout of the output: that of the first laid-out input of the output's shape.
        let full = node
            .inputs
            .iter()
            .find(|&&v| known_dims(g, v).as_ref() == Some(&od) && self.layout(v).is_some())
            .copied();
        let Some(first) = full else {
            // No input of the output's shape is laid out: a laid-out smaller operand cannot be
            // followed (its channels would broadcast into untracked data).
            return self.opaque(id, "an element-wise op with untracked data");
        };
        let l = self.layout(first).expect("chosen laid out");
        if let Op::Binary(BinaryOp::Pow) = node.op {
            if node.inputs[1] == first {
                return self.opaque(id, "a power with channels in the exponent");
            }
        }
        for (input, &v) in node.inputs.iter().enumerate() {
            if v == first {
                continue;
            }
            if known_dims(g, v).as_ref() == Some(&od) {
                match self.layout(v) {
                    Some(lv) if lv.axis == l.axis => {
                        self.unify(&l, &lv, "a residual of another shape")
                    }
                    _ => {
                        self.fix(first, "an element-wise op with untracked data");
                        self.fix(v, "an element-wise op with untracked data");
                    }
                }
            } else {
                self.channel_operand(id, input, v, &l, out, Role::Parameter);
            }
        }
        self.set(out, Some(l));
    }

    fn concat(&mut self, id: NodeId, axis: i64) {
        let g = self.g;
        let node = g.node(id);
        let out = node.outputs[0];
        let rank = g.ty(out).rank() as i64;
        let axis = if axis < 0 { axis + rank } else { axis } as usize;
        let layouts: Vec<Option<Layout>> = node.inputs.iter().map(|&v| self.layout(v)).collect();
        let Some(any) = layouts.iter().flatten().next().cloned() else {
            return;
        };
        if layouts.iter().flatten().any(|l| l.axis != any.axis) {
            return self.opaque(id, "a concat of differently laid out tensors");
        }
        if axis != any.axis {
            // Along another axis: every input has the same channels.
            for l in layouts.iter().flatten() {
                self.unify(&any, l, "a concat of different channels");
            }
            if layouts.iter().any(|l| l.is_none()) {
                return self.opaque(id, "a concat with untracked data");
            }
            return self.set(out, Some(any));
        }
        let mut segments = Vec::new();
        for (&v, l) in node.inputs.iter().zip(layouts) {
            match l {
                Some(l) => segments.extend(l.segments),
                None => {
                    let Some(d) = known_dims(g, v) else {
                        return self.opaque(id, "unknown shapes");
                    };
                    let s = self.new_space(d[axis], None);
                    self.fix_space(s, "concatenated with untracked data");
                    segments.push(Segment {
                        space: s,
                        repeat: 1,
                    });
                }
            }
        }
        self.set(out, Some(Layout { axis, segments }));
    }

    fn split(&mut self, id: NodeId, axis: i64) {
        let g = self.g;
        let node = g.node(id);
        let Some(l) = self.layout(node.inputs[0]) else {
            return;
        };
        let rank = g.ty(node.inputs[0]).rank() as i64;
        let axis = if axis < 0 { axis + rank } else { axis } as usize;
        if axis != l.axis {
            for &o in &node.outputs.clone() {
                self.set(o, Some(l.clone()));
            }
            return;
        }
        // Outputs along the channel axis: each must be whole segments.
        let mut rest = l.segments.clone().into_iter();
        let mut outs = Vec::new();
        let mut extents = Vec::new();
        for &o in &node.outputs {
            let Some(d) = known_dims(g, o) else {
                return self.opaque(id, "unknown shapes");
            };
            extents.push(d[axis]);
            let (mut want, mut segs) = (d[axis], Vec::new());
            while want > 0 {
                let Some(s) = rest.next() else { break };
                let n = self.spaces[s.space].size * s.repeat;
                if n > want {
                    return self.opaque(id, "a split inside one producer's channels");
                }
                want -= n;
                segs.push(s);
            }
            if want != 0 {
                return self.opaque(id, "a split inside one producer's channels");
            }
            outs.push((o, segs));
        }
        self.member(
            id,
            Edit::SplitSizes {
                layout: l.clone(),
                extents,
            },
        );
        for (o, segments) in outs {
            self.set(o, Some(Layout { axis, segments }));
        }
    }

    /// Reshape, Flatten, Squeeze, Unsqueeze: the channel axis either stays an axis of its own
    /// (same leading extent, same channel extent) or becomes the leading part of the last axis
    /// (a flatten: each channel a block of features).
    fn reshape(&mut self, id: NodeId) {
        let g = self.g;
        let node = g.node(id);
        let out = node.outputs[0];
        let Some(l) = self.layout(node.inputs[0]) else {
            return;
        };
        let (Some(id_), Some(od)) = (known_dims(g, node.inputs[0]), known_dims(g, out)) else {
            return self.opaque(id, "unknown shapes");
        };
        let lead: usize = id_[..l.axis].iter().product();
        let c = id_[l.axis];
        let mut prefix = 1usize;
        let mut found = None;
        for (j, &e) in od.iter().enumerate() {
            if prefix == lead {
                let trailing: usize = id_[l.axis + 1..].iter().product();
                if e == c {
                    found = Some((j, 1));
                    break;
                }
                if e == c * trailing
                    && j + 1 == od.len()
                    && l.segments.iter().all(|s| s.repeat == 1)
                {
                    found = Some((j, trailing));
                    break;
                }
            }
            prefix *= e;
            if prefix > lead {
                break;
            }
        }
        let Some((j, repeat)) = found else {
            return self.opaque(id, "a reshape that splits or merges the channel axis");
        };
        if let Op::Reshape { .. } = node.op {
            let Some(shape) = g.const_data(node.inputs[1]) else {
                return self.opaque(id, "a reshape to a computed shape");
            };
            let entry = shape.to_i64_vec().get(j).copied();
            match entry {
                Some(-1) => {}
                Some(0) if j == l.axis && repeat == 1 => {}
                Some(e) if e > 0 => self.member(
                    id,
                    Edit::ReshapeDim {
                        index: j,
                        layout: Layout {
                            axis: j,
                            segments: scaled(&l.segments, repeat),
                        },
                    },
                ),
                _ => return self.opaque(id, "a reshape that splits or merges the channel axis"),
            }
        }
        if let Op::Squeeze | Op::Unsqueeze = node.op {
            if repeat != 1 {
                return self.opaque(id, "a reshape that merges the channel axis");
            }
        }
        self.set(
            out,
            Some(Layout {
                axis: j,
                segments: scaled(&l.segments, repeat),
            }),
        );
    }
}

fn scaled(segments: &[Segment], repeat: usize) -> Vec<Segment> {
    segments
        .iter()
        .map(|s| Segment {
            space: s.space,
            repeat: s.repeat * repeat,
        })
        .collect()
}

/// The dependency groups of `g` (see the module docs). Symbolic extents other than a leading
/// batch axis leave the tensors they touch untracked.
pub fn analyze(g: &Graph) -> Analysis {
    let mut w = Walk {
        g,
        layouts: vec![None; g.values.len()],
        spaces: Vec::new(),
        fixed: Vec::new(),
        unions: Vec::new(),
        members: Vec::new(),
    };
    for i in 0..g.nodes.len() {
        let id = NodeId(i as u32);
        if g.node(id).outputs.is_empty() {
            continue;
        }
        w.visit(id);
    }
    for o in &g.outputs {
        w.fix(o.value, "a graph output");
    }
    let mut uf = UnionFind::<usize>::new(w.spaces.len());
    for &(a, b) in &w.unions {
        uf.union(a, b);
    }
    let mut root_group = std::collections::HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of = Vec::with_capacity(w.spaces.len());
    for s in 0..w.spaces.len() {
        let root = uf.find(s);
        let gi = *root_group.entry(root).or_insert_with(|| {
            groups.push(Group {
                spaces: Vec::new(),
                size: w.spaces[s].size,
                blocks: 1,
                tied: false,
                fixed: None,
            });
            groups.len() - 1
        });
        group_of.push(gi);
        let gr = &mut groups[gi];
        gr.spaces.push(s);
        if gr.fixed.is_none() {
            gr.fixed = w.fixed[s].clone();
        }
        if w.spaces[s].size != gr.size {
            gr.fixed = Some("spaces of different sizes".into());
        }
        let sp = &w.spaces[s];
        for n in [sp.blocks, sp.tie] {
            if n > 1 && gr.blocks == 1 {
                gr.blocks = n;
            } else if n > 1 && n != gr.blocks {
                gr.fixed = Some(format!(
                    "grouped convolutions of {} and {n} groups sharing channels",
                    gr.blocks
                ));
            }
        }
        gr.tied |= sp.tie > 1;
    }
    for gr in &mut groups {
        if !gr.size.is_multiple_of(gr.blocks) {
            gr.fixed = Some("grouped convolution blocks of unequal sizes".into());
        }
    }
    Analysis {
        spaces: w.spaces,
        group_of,
        groups,
        members: w.members,
    }
}
