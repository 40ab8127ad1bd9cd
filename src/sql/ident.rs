//! Names as PostgreSQL resolves them: unquoted identifiers fold to lower case, quoted
//! ones keep their case, and schema-qualified names keep their schema.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

pub fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// `Public.Users` → `public.users`; `"Public"."Users"` → `Public.Users`.
pub fn object_name(name: &ObjectName) -> String {
    let mut out = String::new();
    for part in &name.0 {
        if !out.is_empty() {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(i) => out.push_str(&ident(i)),
            ObjectNamePart::Function(f) => out.push_str(&f.to_string()),
        }
    }
    out
}

/// The last part of a name: what a function is called without its schema.
pub fn base_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => ident(i),
        Some(ObjectNamePart::Function(f)) => f.to_string(),
        None => String::new(),
    }
}
