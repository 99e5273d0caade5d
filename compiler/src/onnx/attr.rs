//! Typed access to node attributes. Each helper returns `Ok(None)` when the attribute is absent
//! and a [`Reason::AttrType`] error naming the attribute when it has another type.

use super::error::Reason;
use super::proto::{AttributeProto, AttributeType, NodeProto, TensorProto};

/// The attribute named `name`, if present (the last one wins if repeated).
pub fn find<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().rev().find(|a| a.name == name)
}

/// The attribute's declared type; models from before `type` was recorded are classified by the
/// field that is set.
pub fn attr_type(a: &AttributeProto) -> AttributeType {
    if let Ok(t) = AttributeType::try_from(a.r#type) {
        if t != AttributeType::Undefined {
            return t;
        }
    }
    if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else if a.s.is_some() {
        AttributeType::String
    } else if a.i.is_some() {
        AttributeType::Int
    } else if a.f.is_some() {
        AttributeType::Float
    } else {
        AttributeType::Undefined
    }
}

fn expect<'n>(
    node: &'n NodeProto,
    name: &str,
    want: AttributeType,
    expected: &'static str,
) -> Result<Option<&'n AttributeProto>, Reason> {
    let Some(a) = find(node, name) else {
        return Ok(None);
    };
    // A type code ONNX does not define is corruption, not an old model without types.
    if a.r#type != 0 && AttributeType::try_from(a.r#type).is_err() {
        return Err(Reason::AttrValue {
            name: name.to_string(),
            reason: format!("unknown attribute type code {}", a.r#type),
        });
    }
    let got = attr_type(a);
    // An untyped, empty list attribute is indistinguishable from an empty list of either kind.
    let empty_list_ok = got == AttributeType::Undefined
        && matches!(
            want,
            AttributeType::Ints | AttributeType::Floats | AttributeType::Strings
        );
    if got != want && !empty_list_ok {
        return Err(Reason::AttrType {
            name: name.to_string(),
            expected,
            got: got.onnx_name(),
        });
    }
    Ok(Some(a))
}

pub fn attr_int(node: &NodeProto, name: &str) -> Result<Option<i64>, Reason> {
    Ok(expect(node, name, AttributeType::Int, "an int")?.map(|a| a.i.unwrap_or(0)))
}

pub fn attr_ints<'n>(node: &'n NodeProto, name: &str) -> Result<Option<&'n [i64]>, Reason> {
    Ok(expect(node, name, AttributeType::Ints, "a list of ints")?.map(|a| a.ints.as_slice()))
}

pub fn attr_float(node: &NodeProto, name: &str) -> Result<Option<f32>, Reason> {
    Ok(expect(node, name, AttributeType::Float, "a float")?.map(|a| a.f.unwrap_or(0.0)))
}

pub fn attr_floats<'n>(node: &'n NodeProto, name: &str) -> Result<Option<&'n [f32]>, Reason> {
    Ok(expect(node, name, AttributeType::Floats, "a list of floats")?.map(|a| a.floats.as_slice()))
}

pub fn attr_string<'n>(node: &'n NodeProto, name: &str) -> Result<Option<&'n str>, Reason> {
    match expect(node, name, AttributeType::String, "a string")? {
        None => Ok(None),
        Some(a) => {
            let s = a.s.as_deref().unwrap_or(&[]);
            std::str::from_utf8(s)
                .map(Some)
                .map_err(|_| Reason::AttrValue {
                    name: name.to_string(),
                    reason: "not valid UTF-8".into(),
                })
        }
    }
}

pub fn attr_tensor<'n>(node: &'n NodeProto, name: &str) -> Result<Option<&'n TensorProto>, Reason> {
    match expect(node, name, AttributeType::Tensor, "a tensor")? {
        None => Ok(None),
        Some(a) => a.t.as_ref().map(Some).ok_or_else(|| Reason::AttrValue {
            name: name.to_string(),
            reason: "TENSOR attribute holds no tensor".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_with(a: AttributeProto) -> NodeProto {
        NodeProto {
            op_type: "Conv".into(),
            attribute: vec![a],
            ..Default::default()
        }
    }

    #[test]
    fn typed_access_and_errors() {
        let n = node_with(AttributeProto {
            name: "group".into(),
            r#type: AttributeType::Floats as i32,
            floats: vec![1.0],
            ..Default::default()
        });
        let e = attr_int(&n, "group").unwrap_err();
        assert_eq!(
            e.to_string(),
            "attribute \"group\" must be an int, got FLOATS"
        );
        assert_eq!(attr_floats(&n, "group").unwrap(), Some(&[1.0f32][..]));
        assert_eq!(attr_int(&n, "missing").unwrap(), None);

        let n = node_with(AttributeProto {
            name: "alpha".into(),
            r#type: AttributeType::Int as i32,
            i: Some(2),
            ..Default::default()
        });
        assert!(matches!(
            attr_float(&n, "alpha"),
            Err(Reason::AttrType { .. })
        ));
        assert_eq!(attr_int(&n, "alpha").unwrap(), Some(2));
    }

    #[test]
    fn untyped_attributes_are_classified_by_field() {
        let n = node_with(AttributeProto {
            name: "axis".into(),
            i: Some(-1),
            ..Default::default()
        });
        assert_eq!(attr_int(&n, "axis").unwrap(), Some(-1));
        let n = node_with(AttributeProto {
            name: "mode".into(),
            s: Some(bytes::Bytes::from_static(b"linear")),
            ..Default::default()
        });
        assert_eq!(attr_string(&n, "mode").unwrap(), Some("linear"));
        assert!(attr_int(&n, "mode").is_err());
    }
}
