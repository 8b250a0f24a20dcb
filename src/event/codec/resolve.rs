//! Reading a record another version of a schema wrote: Avro schema resolution, with union
//! branches matched by name. apache-avro 0.20 picks a union branch by trying the reader's
//! branches in order and taking the first the value fits, so two records of one shape are the
//! same to it: an `ApprovalDenied` written by an earlier build came back as an
//! `ApprovalGranted` (the payload union has both, with the same fields) — a denied call would
//! have run after an upgrade.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema, SchemaKind, UnionSchema};
use apache_avro::types::Value;

/// A schema and every named type in it, owned (kept per writer schema).
pub struct Named {
    pub schema: Schema,
    names: HashMap<Name, Schema>,
}

impl Named {
    pub fn new(schema: Schema) -> Result<Self, String> {
        let names = ResolvedSchema::try_from(&schema)
            .map_err(|e| e.to_string())?
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Ok(Named { schema, names })
    }

    fn deref<'a>(&'a self, s: &'a Schema) -> &'a Schema {
        match s {
            Schema::Ref { name } => self.names.get(name).unwrap_or(s),
            s => s,
        }
    }
}

/// `value`, as `writer` wrote it, read as `reader`.
pub fn resolve(value: Value, writer: &Named, reader: &Named) -> Result<Value, String> {
    Resolver { writer, reader }.value(value, &writer.schema, &reader.schema)
}

struct Resolver<'a> {
    writer: &'a Named,
    reader: &'a Named,
}

impl Resolver<'_> {
    fn value(&self, v: Value, ws: &Schema, rs: &Schema) -> Result<Value, String> {
        let (ws, rs) = (self.writer.deref(ws), self.reader.deref(rs));
        match (ws, rs) {
            (Schema::Union(wu), _) => {
                let Value::Union(i, inner) = v else {
                    return Err(format!("expected a union value, got {v:?}"));
                };
                let wb = wu
                    .variants()
                    .get(i as usize)
                    .ok_or_else(|| format!("union branch {i} out of range"))?;
                self.value(*inner, wb, rs)
            }
            (_, Schema::Union(ru)) => {
                let (j, rb) = self.branch(ws, ru)?;
                Ok(Value::Union(j as u32, Box::new(self.value(v, ws, rb)?)))
            }
            (Schema::Record(wr), Schema::Record(rr)) => {
                let Value::Record(fields) = v else {
                    return Err(format!("expected a record for {}", rr.name.name));
                };
                let mut given: HashMap<String, Value> = fields.into_iter().collect();
                let mut out = Vec::with_capacity(rr.fields.len());
                for f in &rr.fields {
                    let written = wr.lookup.get(&f.name).and_then(|&i| wr.fields.get(i));
                    let v = match (given.remove(&f.name), written) {
                        (Some(v), Some(w)) => self.value(v, &w.schema, &f.schema)?,
                        _ => match &f.default {
                            Some(d) => self.default(d, &f.schema)?,
                            None => {
                                return Err(format!(
                                    "{}.{}: not written and no default",
                                    rr.name.name, f.name
                                ));
                            }
                        },
                    };
                    out.push((f.name.clone(), v));
                }
                Ok(Value::Record(out))
            }
            (Schema::Enum(_), Schema::Enum(re)) => {
                let symbol = match v {
                    Value::Enum(_, s) | Value::String(s) => s,
                    other => return Err(format!("expected an enum symbol, got {other:?}")),
                };
                // A symbol the reader does not know reads as the reader's default.
                let symbol = if re.symbols.contains(&symbol) {
                    symbol
                } else {
                    re.default.clone().ok_or_else(|| {
                        format!("{}: unknown symbol {symbol} and no default", re.name.name)
                    })?
                };
                let i = re
                    .symbols
                    .iter()
                    .position(|s| *s == symbol)
                    .ok_or_else(|| format!("{}: bad default {symbol}", re.name.name))?;
                Ok(Value::Enum(i as u32, symbol))
            }
            (Schema::Array(wa), Schema::Array(ra)) => match v {
                Value::Array(items) => items
                    .into_iter()
                    .map(|x| self.value(x, &wa.items, &ra.items))
                    .collect::<Result<_, _>>()
                    .map(Value::Array),
                other => Err(format!("expected an array, got {other:?}")),
            },
            (Schema::Map(wm), Schema::Map(rm)) => match v {
                Value::Map(items) => items
                    .into_iter()
                    .map(|(k, x)| Ok((k, self.value(x, &wm.types, &rm.types)?)))
                    .collect::<Result<_, String>>()
                    .map(Value::Map),
                other => Err(format!("expected a map, got {other:?}")),
            },
            // Primitives, with Avro's promotions (int → long, float → double, …).
            (_, rs) => v.resolve(rs).map_err(|e| e.to_string()),
        }
    }

    /// The reader's branch for a value the writer wrote with `ws`: the same named type by
    /// name, else the same kind of schema.
    fn branch<'r>(&self, ws: &Schema, ru: &'r UnionSchema) -> Result<(usize, &'r Schema), String> {
        let found = match ws.name() {
            Some(name) => ru.variants().iter().position(|r| {
                self.reader
                    .deref(r)
                    .name()
                    .is_some_and(|n| n.name == name.name)
            }),
            None => ru
                .variants()
                .iter()
                .position(|r| SchemaKind::from(self.reader.deref(r)) == SchemaKind::from(ws)),
        };
        found
            .and_then(|i| Some((i, ru.variants().get(i)?)))
            .ok_or_else(|| format!("no union branch for {:?}", SchemaKind::from(ws)))
    }

    /// A field's default (JSON, as the schema gives it) as a value of the field's schema; a
    /// union's default is for its first branch.
    fn default(&self, json: &serde_json::Value, schema: &Schema) -> Result<Value, String> {
        match self.reader.deref(schema) {
            Schema::Union(u) => {
                let first = u.variants().first().ok_or("an empty union")?;
                Ok(Value::Union(0, Box::new(self.default(json, first)?)))
            }
            Schema::Enum(e) => {
                let symbol = json
                    .as_str()
                    .ok_or("an enum default that is not a string")?;
                let i = e
                    .symbols
                    .iter()
                    .position(|s| s == symbol)
                    .ok_or_else(|| format!("default {symbol} is not a symbol"))?;
                Ok(Value::Enum(i as u32, symbol.to_string()))
            }
            Schema::Array(a) => match json {
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|x| self.default(x, &a.items))
                    .collect::<Result<_, _>>()
                    .map(Value::Array),
                _ => Err("an array default that is not an array".into()),
            },
            Schema::Null => Ok(Value::Null),
            Schema::Boolean => json
                .as_bool()
                .map(Value::Boolean)
                .ok_or("not a boolean".into()),
            Schema::Int => json
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Value::Int)
                .ok_or("not an int".into()),
            Schema::Long => json.as_i64().map(Value::Long).ok_or("not a long".into()),
            Schema::Double => json
                .as_f64()
                .map(Value::Double)
                .ok_or("not a double".into()),
            Schema::String => json
                .as_str()
                .map(|s| Value::String(s.to_string()))
                .ok_or("not a string".into()),
            s => Value::from(json.clone())
                .resolve(s)
                .map_err(|e| e.to_string()),
        }
    }
}
