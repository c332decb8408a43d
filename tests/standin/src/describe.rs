//! `describe` JSON: describeGlobal (`GET sobjects/`), the sObject basic information
//! (`GET sobjects/{Type}`) and the full describe (`GET sobjects/{Type}/describe`).
//!
//! Denied objects and fields are left out, which is how a real org shows missing object
//! permissions and field-level security to the API user (SPEC A-4 "verify settings" reads
//! these to report exactly which permission is missing).

use crate::json::J;
use crate::org::OrgData;
use crate::schema::{FieldDef, FieldType, ObjectDef};

fn urls(version: &str, obj: &ObjectDef) -> J {
    let base = format!("/services/data/v{version}/sobjects/{}", obj.name);
    J::obj([
        (
            "compactLayouts",
            J::Str(format!("{base}/describe/compactLayouts")),
        ),
        ("rowTemplate", J::Str(format!("{base}/{{ID}}"))),
        ("describe", J::Str(format!("{base}/describe"))),
        ("sobject", J::Str(base.clone())),
    ])
}

/// The summary an object has in describeGlobal and in `objectDescribe`.
fn summary(version: &str, obj: &ObjectDef) -> Vec<(String, J)> {
    let b = J::Bool;
    vec![
        ("activateable".into(), b(false)),
        ("createable".into(), b(obj.createable)),
        ("custom".into(), b(obj.custom)),
        ("customSetting".into(), b(false)),
        ("deletable".into(), b(obj.deletable)),
        ("deprecatedAndHidden".into(), b(false)),
        ("feedEnabled".into(), b(!obj.custom)),
        ("keyPrefix".into(), J::str(&obj.key_prefix)),
        ("label".into(), J::str(&obj.label)),
        ("labelPlural".into(), J::str(&obj.label_plural)),
        ("layoutable".into(), b(true)),
        (
            "mergeable".into(),
            b(matches!(
                obj.name.as_str(),
                "Account" | "Contact" | "Lead" | "Case"
            )),
        ),
        ("mruEnabled".into(), b(true)),
        ("name".into(), J::str(&obj.name)),
        ("queryable".into(), b(obj.queryable)),
        ("replicateable".into(), b(true)),
        ("retrieveable".into(), b(true)),
        ("searchable".into(), b(obj.searchable)),
        ("triggerable".into(), b(true)),
        ("undeletable".into(), b(obj.deletable)),
        ("updateable".into(), b(obj.updateable)),
        ("urls".into(), urls(version, obj)),
    ]
}

/// `GET sobjects/`.
pub fn describe_global(data: &OrgData, version: &str) -> J {
    J::obj([
        ("encoding", J::str("UTF-8")),
        ("maxBatchSize", J::int(200)),
        (
            "sobjects",
            J::Arr(
                data.schema
                    .visible_objects()
                    .map(|o| J::Obj(summary(version, o)))
                    .collect(),
            ),
        ),
    ])
}

/// `GET sobjects/{Type}`: basic information plus recently viewed items (none here).
pub fn basic_info(version: &str, obj: &ObjectDef) -> J {
    J::obj([
        ("objectDescribe", J::Obj(summary(version, obj))),
        ("recentItems", J::Arr(Vec::new())),
    ])
}

fn field_json(data: &OrgData, f: &FieldDef) -> J {
    let b = J::Bool;
    let picklist: Vec<J> = f
        .picklist
        .iter()
        .map(|v| {
            J::obj([
                ("active", b(true)),
                (
                    "defaultValue",
                    b(f.default_value.as_deref() == Some(v.as_str())),
                ),
                ("label", J::str(v)),
                ("validFor", J::Null),
                ("value", J::str(v)),
            ])
        })
        .collect();
    let reference_to: Vec<J> = if f.ftype == FieldType::Reference {
        data.schema
            .reference_targets(f)
            .iter()
            .map(J::str)
            .collect()
    } else {
        Vec::new()
    };
    let (precision, scale, digits) = match f.ftype {
        FieldType::Double | FieldType::Currency => (18, 2, 0),
        FieldType::Int => (0, 0, 9),
        _ => (0, 0, 0),
    };
    let byte_length = if f.ftype.is_textual() {
        f.length * 3
    } else {
        0
    };
    J::obj([
        ("aggregatable", b(f.ftype != FieldType::TextArea)),
        ("autoNumber", b(f.auto_number)),
        ("byteLength", J::uint(u64::from(byte_length))),
        ("calculated", b(f.calculated)),
        ("caseSensitive", b(false)),
        ("createable", b(f.createable)),
        ("custom", b(f.custom)),
        (
            "defaultValue",
            match (&f.default_value, f.ftype) {
                (Some(v), FieldType::Boolean) => b(v == "true"),
                _ => J::Null,
            },
        ),
        (
            "defaultedOnCreate",
            b(f.defaulted_on_create || f.name == "OwnerId"),
        ),
        ("dependentPicklist", b(false)),
        ("digits", J::int(digits)),
        ("externalId", b(f.external_id)),
        ("filterable", b(f.ftype != FieldType::TextArea)),
        (
            "groupable",
            b(!matches!(
                f.ftype,
                FieldType::TextArea | FieldType::DateTime
            )),
        ),
        ("idLookup", b(f.name == "Id" || f.external_id)),
        ("label", J::str(&f.label)),
        (
            "length",
            J::uint(u64::from(if f.ftype.is_textual() { f.length } else { 0 })),
        ),
        ("name", J::str(&f.name)),
        ("nameField", b(f.name_field)),
        ("nillable", b(f.nillable)),
        ("picklistValues", J::Arr(picklist)),
        ("precision", J::int(precision)),
        ("referenceTo", J::Arr(reference_to)),
        (
            "relationshipName",
            f.relationship_name.as_deref().map_or(J::Null, J::str),
        ),
        ("restrictedPicklist", b(f.restricted)),
        ("scale", J::int(scale)),
        ("soapType", J::str(f.ftype.soap_type())),
        ("sortable", b(f.ftype != FieldType::TextArea)),
        ("type", J::str(f.ftype.wire_name())),
        ("unique", b(false)),
        ("updateable", b(f.updateable)),
    ])
}

/// `GET sobjects/{Type}/describe`.
pub fn describe(data: &OrgData, version: &str, obj: &ObjectDef) -> J {
    let mut pairs = summary(version, obj);
    let children: Vec<J> = data
        .schema
        .children_of(&obj.name)
        .into_iter()
        .filter(|c| data.schema.visible_object(&c.child_object).is_some())
        .map(|c| {
            J::obj([
                ("cascadeDelete", J::Bool(c.child_object == "Task")),
                ("childSObject", J::str(&c.child_object)),
                ("deprecatedAndHidden", J::Bool(false)),
                ("field", J::str(&c.field)),
                ("relationshipName", J::str(&c.relationship_name)),
            ])
        })
        .collect();
    let fields: Vec<J> = obj
        .fields
        .iter()
        .filter(|f| data.schema.field_visible(obj, f))
        .map(|f| field_json(data, f))
        .collect();
    pairs.push(("childRelationships".into(), J::Arr(children)));
    pairs.push(("fields".into(), J::Arr(fields)));
    pairs.push(("recordTypeInfos".into(), J::Arr(Vec::new())));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    J::Obj(pairs)
}
