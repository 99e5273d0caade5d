//! `ModelProto` to IR [`Graph`].

use super::error::{invalid, unsupported, ImportError, Reason};
use super::external::ExternalFiles;
use super::ops::{known_domain, lower, NodeLowering};
use super::proto::{
    tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto, NodeProto, ValueInfoProto,
};
use super::tensor::MAX_RANK;
use super::tensor::{convert, dtype_from_onnx};
use super::{Model, OpsetImport};
use kestrel_ir::tensor::byte_len;
use kestrel_ir::{Dim, Graph, Shape, TensorType, ValueId};
use std::collections::{HashMap, HashSet};
use std::path::Path;

fn model_err(file: &str, reason: Reason) -> ImportError {
    ImportError::Model {
        file: file.to_string(),
        reason: Box::new(reason),
    }
}

/// The opset version of the default domain (`""` or `"ai.onnx"`).
fn default_opset(opsets: &[OpsetImport]) -> Option<i64> {
    opsets
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// The IR type of a graph input. Unnamed or missing dims become fresh symbols `unk_N`.
fn value_type(vi: &ValueInfoProto, fresh: &mut usize) -> Result<TensorType, Reason> {
    let tp = vi
        .r#type
        .as_ref()
        .ok_or_else(|| invalid(format!("input \"{}\" has no type", vi.name)))?;
    let t = match &tp.value {
        Some(type_proto::Value::TensorType(t)) => t,
        Some(_) => {
            return Err(unsupported(format!(
                "input \"{}\" is not a dense tensor (sequence, map, optional and sparse types are not supported)",
                vi.name
            )))
        }
        None => return Err(invalid(format!("input \"{}\" has no type", vi.name))),
    };
    let dtype = dtype_from_onnx(t.elem_type)?;
    let shape = t
        .shape
        .as_ref()
        .ok_or_else(|| unsupported(format!("input \"{}\" has unknown rank", vi.name)))?;
    if shape.dim.len() > MAX_RANK {
        return Err(invalid(format!(
            "input \"{}\" has rank {}, above the limit of {MAX_RANK}",
            vi.name,
            shape.dim.len()
        )));
    }
    let mut dims = Shape::new();
    let mut known: Vec<usize> = Vec::new();
    for d in &shape.dim {
        dims.push(match &d.value {
            Some(dimension::Value::DimValue(v)) => {
                let n = usize::try_from(*v).map_err(|_| {
                    invalid(format!("input \"{}\" has negative dimension {v}", vi.name))
                })?;
                known.push(n);
                Dim::Known(n)
            }
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::sym(p),
            _ => {
                let name = format!("unk_{fresh}");
                *fresh += 1;
                Dim::sym(&name)
            }
        });
    }
    // No tensor can hold more than `isize::MAX` bytes; a type claiming more is not a model
    // anyone can run, and letting it through would only move the overflow downstream.
    match byte_len(dtype, &known) {
        Some(n) if n <= isize::MAX as usize => {}
        _ => {
            return Err(invalid(format!(
                "input \"{}\" has known dimensions {known:?}, more than any tensor can hold",
                vi.name
            )))
        }
    }
    Ok(TensorType::new(dtype, dims))
}

/// Orders node indices so that every node comes after the producers of its inputs. Returns the
/// identity order when the graph is already sorted (as ONNX requires).
fn topo_order(g: &GraphProto, defined: &HashSet<&str>) -> Result<Vec<usize>, Reason> {
    let mut seen: HashSet<&str> = defined.clone();
    let mut sorted = true;
    'outer: for n in &g.node {
        for i in &n.input {
            if !i.is_empty() && !seen.contains(i.as_str()) {
                sorted = false;
                break 'outer;
            }
        }
        seen.extend(
            n.output
                .iter()
                .filter(|o| !o.is_empty())
                .map(|o| o.as_str()),
        );
    }
    if sorted {
        return Ok((0..g.node.len()).collect());
    }
    // Kahn's algorithm, keeping the original order among ready nodes.
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, n) in g.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), k);
        }
    }
    let mut pending = vec![0usize; g.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); g.node.len()];
    for (k, n) in g.node.iter().enumerate() {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if defined.contains(i.as_str()) {
                continue;
            }
            match producer.get(i.as_str()) {
                Some(&p) => {
                    pending[k] += 1;
                    users[p].push(k);
                }
                None => {
                    return Err(invalid(format!(
                        "node {k} \"{}\" ({}) uses \"{i}\", which nothing defines",
                        n.name, n.op_type
                    )))
                }
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..g.node.len()).filter(|&k| pending[k] == 0).collect();
    let mut order = Vec::with_capacity(g.node.len());
    while let Some(k) = ready.pop_first() {
        order.push(k);
        for &u in &users[k] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != g.node.len() {
        let stuck: Vec<String> = (0..g.node.len())
            .filter(|&k| pending[k] > 0)
            .take(5)
            .map(|k| format!("{k} \"{}\" ({})", g.node[k].name, g.node[k].op_type))
            .collect();
        return Err(invalid(format!(
            "the graph has a cycle through nodes {}",
            stuck.join(", ")
        )));
    }
    Ok(order)
}

/// What defines a value name (for errors about names defined twice).
#[derive(Clone, Copy)]
enum Def {
    Initializer,
    Input,
    /// The node at this index of the ONNX graph's node list.
    Node(usize),
}

impl Def {
    fn describe(self, gp: &GraphProto) -> String {
        match self {
            Def::Initializer => "an initializer".into(),
            Def::Input => "a graph input".into(),
            Def::Node(k) => {
                let n = &gp.node[k];
                format!("node {k} \"{}\" ({})", n.name, n.op_type)
            }
        }
    }
}

/// Imports a decoded model. `file` labels errors.
pub(crate) fn import_model(
    m: &ModelProto,
    model_dir: Option<&Path>,
    file: &str,
) -> Result<Model, ImportError> {
    let opset_imports: Vec<OpsetImport> = m
        .opset_import
        .iter()
        .map(|o| OpsetImport {
            domain: o.domain.clone(),
            version: o.version,
        })
        .collect();
    let opset = default_opset(&opset_imports);
    if let Some(v) = opset.filter(|&v| v < 1) {
        return Err(model_err(
            file,
            invalid(format!(
                "opset version {v} of the default domain is not valid"
            )),
        ));
    }
    let gp = m
        .graph
        .as_ref()
        .ok_or_else(|| model_err(file, invalid("the model has no graph")))?;
    let graph = import_graph(gp, opset, &opset_imports, model_dir, file)?;
    Ok(Model {
        graph,
        ir_version: m.ir_version,
        opset_imports,
        producer_name: m.producer_name.clone(),
        producer_version: m.producer_version.clone(),
        model_version: m.model_version,
        doc_string: m.doc_string.clone(),
        metadata: m
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
    })
}

fn import_graph(
    gp: &GraphProto,
    opset: Option<i64>,
    opsets: &[OpsetImport],
    model_dir: Option<&Path>,
    file: &str,
) -> Result<Graph, ImportError> {
    let merr = |reason| model_err(file, reason);
    if let Some(s) = gp.sparse_initializer.first() {
        let name = s.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(merr(unsupported(format!(
            "sparse initializer \"{name}\" is not supported"
        ))));
    }
    if gp.output.is_empty() {
        return Err(merr(invalid("the graph has no outputs")));
    }
    let mut g = Graph::new(gp.name.clone());
    let mut values: HashMap<String, ValueId> = HashMap::new();
    let mut defs: HashMap<&str, Def> = HashMap::new();
    let mut files = ExternalFiles::new();

    // Initializers are constants, including those also listed as graph inputs (IR >= 4: the
    // initializer is then only a default, which the compiler treats as the value).
    for t in &gp.initializer {
        let data = convert(t, model_dir, &mut files).map_err(|reason| ImportError::Tensor {
            file: file.to_string(),
            tensor: t.name.clone(),
            reason: Box::new(reason),
        })?;
        if t.name.is_empty() {
            return Err(merr(invalid("an initializer has no name")));
        }
        if defs.contains_key(t.name.as_str()) {
            return Err(merr(invalid(format!(
                "initializer \"{}\" is defined twice (two initializers have this name)",
                t.name
            ))));
        }
        let v = g.add_const(t.name.clone(), data);
        values.insert(t.name.clone(), v);
        defs.insert(&t.name, Def::Initializer);
    }
    let mut fresh = 0usize;
    for vi in &gp.input {
        match defs.get(vi.name.as_str()) {
            // An initializer listed as an input too: the initializer is the value (see above).
            Some(Def::Initializer) => continue,
            Some(_) => {
                return Err(merr(invalid(format!(
                    "graph input \"{}\" is listed twice",
                    vi.name
                ))))
            }
            None => {}
        }
        if vi.name.is_empty() {
            return Err(merr(invalid("a graph input has no name")));
        }
        let ty = value_type(vi, &mut fresh).map_err(merr)?;
        let v = g.add_input(vi.name.clone(), ty);
        values.insert(vi.name.clone(), v);
        defs.insert(&vi.name, Def::Input);
    }
    // Every value name has exactly one definition: a second one is an error naming both, found
    // before anything is ordered or lowered (a duplicate would otherwise surface as a confusing
    // cycle or type error, or silently pick one definition).
    for (index, node) in gp.node.iter().enumerate() {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            let this = Def::Node(index);
            if let Some(first) = defs.insert(o, this) {
                return Err(ImportError::Node {
                    file: file.to_string(),
                    index,
                    name: node.name.clone(),
                    op_type: node.op_type.clone(),
                    reason: Box::new(invalid(format!(
                        "value \"{o}\" is defined twice: also by {}",
                        first.describe(gp)
                    ))),
                });
            }
        }
    }
    drop(defs);

    let defined: HashSet<&str> = values.keys().map(|k| k.as_str()).collect();
    let order = topo_order(gp, &defined).map_err(merr)?;
    drop(defined);

    // Every name that something reads: an output absent from the lowering must not be one.
    let mut used: HashSet<&str> = gp.output.iter().map(|o| o.name.as_str()).collect();
    for n in &gp.node {
        used.extend(n.input.iter().filter(|i| !i.is_empty()).map(|i| i.as_str()));
    }

    for index in order {
        let node = &gp.node[index];
        let nerr = |reason| ImportError::Node {
            file: file.to_string(),
            index,
            name: node.name.clone(),
            op_type: node.op_type.clone(),
            reason: Box::new(reason),
        };
        let node_used: Vec<bool> = node
            .output
            .iter()
            .map(|o| !o.is_empty() && used.contains(o.as_str()))
            .collect();
        let outs = import_node(
            &mut g, node, opset, opsets, &values, &mut files, model_dir, index, node_used,
        )
        .map_err(nerr)?;
        for (k, o) in node.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            match outs.get(k) {
                Some(&v) => {
                    if values.contains_key(o) {
                        return Err(nerr(invalid(format!("value \"{o}\" is defined twice"))));
                    }
                    if g.values[v.index()].name.is_none() {
                        g.values[v.index()].name = Some(o.clone());
                    }
                    values.insert(o.clone(), v);
                }
                None if used.contains(o.as_str()) => {
                    return Err(nerr(Reason::UnsupportedOutput {
                        index: k,
                        name: o.clone(),
                        reason: match node.op_type.as_str() {
                            "MaxPool" => "MaxPool's Indices output is not supported",
                            "BatchNormalization" => "training-mode outputs are not supported",
                            _ => "the importer does not compute it",
                        },
                    }))
                }
                None => {}
            }
        }
    }

    for o in &gp.output {
        let v = *values.get(&o.name).ok_or_else(|| {
            merr(invalid(format!(
                "graph output \"{}\" is not defined",
                o.name
            )))
        })?;
        g.add_output(o.name.clone(), v);
    }
    Ok(g)
}

#[allow(clippy::too_many_arguments)]
fn import_node(
    g: &mut Graph,
    node: &NodeProto,
    opset: Option<i64>,
    opsets: &[OpsetImport],
    values: &HashMap<String, ValueId>,
    files: &mut ExternalFiles,
    model_dir: Option<&Path>,
    index: usize,
    used: Vec<bool>,
) -> Result<Vec<ValueId>, Reason> {
    let domain_opset = opsets
        .iter()
        .find(|o| o.domain == node.domain)
        .map_or(0, |o| o.version);
    if !known_domain(&node.domain) {
        return Err(Reason::UnsupportedOp {
            op_type: node.op_type.clone(),
            domain: node.domain.clone(),
            opset: domain_opset,
        });
    }
    let opset = opset.ok_or_else(|| invalid("the model imports no opset of the default domain"))?;
    if node.op_type == "Constant" && node.domain != "com.microsoft" {
        return import_constant(g, node, files, model_dir).map(|v| vec![v]);
    }
    let inputs = node
        .input
        .iter()
        .map(|i| {
            if i.is_empty() {
                Ok(None)
            } else {
                values
                    .get(i)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| invalid(format!("input \"{i}\" is not defined")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let prefix = if !node.name.is_empty() {
        node.name.clone()
    } else {
        match node.output.first() {
            Some(o) if !o.is_empty() => o.clone(),
            _ => format!("node{index}"),
        }
    };
    let mut cx = NodeLowering {
        g,
        node,
        opset,
        domain_opset,
        inputs,
        files,
        model_dir,
        prefix,
        used,
        nconst: 0,
    };
    lower(&mut cx)
}

/// A `Constant` node becomes an IR constant named after its output.
fn import_constant(
    g: &mut Graph,
    node: &NodeProto,
    files: &mut ExternalFiles,
    model_dir: Option<&Path>,
) -> Result<ValueId, Reason> {
    use super::attr::{attr_float, attr_floats, attr_int, attr_ints, attr_tensor, find};
    use kestrel_ir::Tensor;
    let name = match node.output.first() {
        Some(o) if !o.is_empty() => o.clone(),
        _ => return Err(invalid("Constant has no output")),
    };
    let data = if let Some(t) = attr_tensor(node, "value")? {
        convert(t, model_dir, files)?
    } else if let Some(v) = attr_float(node, "value_float")? {
        Tensor::scalar(v)
    } else if let Some(v) = attr_floats(node, "value_floats")? {
        Tensor::from_vec(vec![v.len()], v.to_vec())
    } else if let Some(v) = attr_int(node, "value_int")? {
        Tensor::scalar(v)
    } else if let Some(v) = attr_ints(node, "value_ints")? {
        Tensor::from_vec(vec![v.len()], v.to_vec())
    } else if find(node, "sparse_value").is_some() {
        return Err(unsupported("sparse constants are not supported"));
    } else if find(node, "value_string").is_some() || find(node, "value_strings").is_some() {
        return Err(Reason::UnsupportedDType("STRING".into()));
    } else {
        return Err(invalid("Constant has no value attribute"));
    };
    Ok(g.add_const(name, data))
}
