//! OpenAPI 3.0 schemas into JSON Schema 2020-12 (3.1 schemas already are): `nullable`,
//! `example` and 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum`, recursively through every
//! place a schema can sit (and only there: a property called `example` stays a property).

use serde_json::{Map, Value};

/// Converts one OpenAPI 3.0 schema in place.
pub fn schema_from_3_0(schema: &mut Value) {
    let Value::Object(obj) = schema else { return };
    // Sub-schemas first, so that a `nullable` wrapper below sees converted children.
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = obj.get_mut(key) {
            schema_from_3_0(sub);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            list.iter_mut().for_each(schema_from_3_0);
        }
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(schema_from_3_0);
    }

    obj.remove("example");
    for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        match obj.get(flag) {
            Some(Value::Bool(true)) => {
                obj.remove(flag);
                if let Some(limit) = obj.remove(bound) {
                    obj.insert(flag.to_owned(), limit);
                }
            }
            Some(Value::Bool(false)) => {
                obj.remove(flag);
            }
            _ => {}
        }
    }
    if obj.remove("nullable") == Some(Value::Bool(true)) {
        make_nullable(obj);
    }
}

/// `nullable: true` in 2020-12 terms: `null` joins the type (and the enum, if any); a schema
/// without a `type` (a `$ref`, an `allOf`) becomes `anyOf: [itself, {type: null}]`.
fn make_nullable(obj: &mut Map<String, Value>) {
    if let Some(Value::Array(options)) = obj.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
    match obj.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            obj.insert("type".into(), Value::Array(vec![Value::String(t), Value::String("null".into())]));
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push(Value::String("null".into()));
            }
        }
        _ => {
            let inner = Value::Object(std::mem::take(obj));
            obj.insert("anyOf".into(), Value::Array(vec![inner, serde_json::json!({"type": "null"})]));
        }
    }
}

/// Converts every schema of a 3.0 document's `components.schemas` in place.
pub fn components_from_3_0(components: &mut Value) {
    if let Some(Value::Object(schemas)) = components.get_mut("schemas") {
        schemas.values_mut().for_each(schema_from_3_0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_the_3_0_only_keywords() {
        let cases = [
            (json!({"type": "string", "nullable": true}), json!({"type": ["string", "null"]})),
            (
                json!({"type": "string", "enum": ["a"], "nullable": true}),
                json!({"type": ["string", "null"], "enum": ["a", null]}),
            ),
            (
                json!({"$ref": "#/components/schemas/A", "nullable": true}),
                json!({"anyOf": [{"$ref": "#/components/schemas/A"}, {"type": "null"}]}),
            ),
            (json!({"type": "string", "nullable": false}), json!({"type": "string"})),
            (
                json!({"type": "number", "minimum": 0, "exclusiveMinimum": true}),
                json!({"type": "number", "exclusiveMinimum": 0}),
            ),
            (
                json!({"type": "number", "maximum": 9, "exclusiveMaximum": false}),
                json!({"type": "number", "maximum": 9}),
            ),
            (json!({"type": "integer", "example": 3}), json!({"type": "integer"})),
            // 3.1-style numeric bounds are left alone.
            (json!({"exclusiveMinimum": 1}), json!({"exclusiveMinimum": 1})),
        ];
        for (mut input, want) in cases {
            let before = input.clone();
            schema_from_3_0(&mut input);
            assert_eq!(input, want, "{before}");
        }
    }

    #[test]
    fn recurses_into_sub_schemas_but_not_into_property_names() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "example": {"type": "string", "nullable": true, "example": "x"},
                "list": {"type": "array", "items": {"type": "integer", "minimum": 1, "exclusiveMinimum": true}},
                "either": {"oneOf": [{"type": "string", "example": "a"}, {"type": "integer"}]}
            },
            "additionalProperties": {"type": "string", "nullable": true}
        });
        schema_from_3_0(&mut schema);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "example": {"type": ["string", "null"]},
                    "list": {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 1}},
                    "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
                },
                "additionalProperties": {"type": ["string", "null"]}
            })
        );
    }
}
