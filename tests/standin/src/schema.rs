//! Objects and fields of an org (docs/salesforce-api.md §5): the standard objects a phone
//! integration touches (Account, Contact, Lead, Task, Case, User) plus custom objects and
//! fields declared per org, and field-level / object-level security ("deny").
//!
//! Names are case-insensitive everywhere in the API (the recording `query-with-next-records-url`
//! asks `FROM Random__c` and gets `"type":"random__c"`), so every lookup here ignores case and
//! hands back the canonical name.

use std::collections::HashSet;

/// Field data types, named as `describe` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Id,
    String,
    TextArea,
    Picklist,
    MultiPicklist,
    Phone,
    Email,
    Url,
    Boolean,
    Int,
    Double,
    Currency,
    Date,
    DateTime,
    Reference,
}

impl FieldType {
    /// The `type` of a describe field.
    pub fn wire_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::MultiPicklist => "multipicklist",
            FieldType::Phone => "phone",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Reference => "reference",
        }
    }

    /// The `soapType` of a describe field.
    pub fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double | FieldType::Currency => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            _ => "xsd:string",
        }
    }

    /// Values travel as JSON strings.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            FieldType::Id
                | FieldType::String
                | FieldType::TextArea
                | FieldType::Picklist
                | FieldType::MultiPicklist
                | FieldType::Phone
                | FieldType::Email
                | FieldType::Url
                | FieldType::Reference
        )
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int | FieldType::Double | FieldType::Currency
        )
    }
}

/// Marker in `reference_to` for Task.WhatId: "any object that is not a person" (Account,
/// Case, custom objects…); expanded by [`Schema::reference_targets`].
pub const ANY_WHAT: &str = "*what*";

/// One field of an object.
#[derive(Clone, Debug)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    pub ftype: FieldType,
    pub length: u32,
    pub createable: bool,
    pub updateable: bool,
    pub nillable: bool,
    pub defaulted_on_create: bool,
    /// Default applied on create when the field is absent.
    pub default_value: Option<String>,
    pub picklist: Vec<String>,
    pub restricted: bool,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    /// The parent's child-relationship name for this lookup (Contact.AccountId -> "Contacts").
    pub child_relationship: Option<String>,
    pub custom: bool,
    pub external_id: bool,
    pub name_field: bool,
    pub auto_number: bool,
    pub calculated: bool,
    /// Missing or null on create -> REQUIRED_FIELD_MISSING.
    pub required: bool,
}

impl FieldDef {
    pub fn new(name: &str, label: &str, ftype: FieldType) -> FieldDef {
        let length = match ftype {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::String | FieldType::Picklist | FieldType::Url => 255,
            FieldType::Phone => 40,
            FieldType::Email => 80,
            FieldType::TextArea => 32000,
            FieldType::MultiPicklist => 4099,
            _ => 0,
        };
        FieldDef {
            name: name.to_string(),
            label: label.to_string(),
            ftype,
            length,
            createable: true,
            updateable: true,
            nillable: !matches!(ftype, FieldType::Boolean | FieldType::Id),
            defaulted_on_create: matches!(ftype, FieldType::Boolean),
            default_value: matches!(ftype, FieldType::Boolean).then(|| "false".to_string()),
            picklist: Vec::new(),
            restricted: false,
            reference_to: Vec::new(),
            relationship_name: None,
            child_relationship: None,
            custom: name.ends_with("__c"),
            external_id: false,
            name_field: false,
            auto_number: false,
            calculated: false,
            required: false,
        }
    }

    /// Read-only (system or derived) field.
    pub fn ro(mut self) -> FieldDef {
        self.createable = false;
        self.updateable = false;
        self
    }

    /// Settable on create only (Task.TaskSubtype).
    pub fn create_only(mut self) -> FieldDef {
        self.updateable = false;
        self
    }

    pub fn req(mut self) -> FieldDef {
        self.required = true;
        self.nillable = false;
        self
    }

    pub fn len(mut self, n: u32) -> FieldDef {
        self.length = n;
        self
    }

    pub fn pick(mut self, values: &[&str]) -> FieldDef {
        self.picklist = values.iter().map(|v| v.to_string()).collect();
        self
    }

    pub fn restricted(mut self) -> FieldDef {
        self.restricted = true;
        self
    }

    /// A non-null field with a default applied on create.
    pub fn default(mut self, value: &str) -> FieldDef {
        self.default_value = Some(value.to_string());
        self.defaulted_on_create = true;
        self.nillable = false;
        self
    }

    pub fn refs(mut self, to: &[&str], relationship: &str) -> FieldDef {
        self.reference_to = to.iter().map(|v| v.to_string()).collect();
        self.relationship_name = Some(relationship.to_string());
        self
    }

    pub fn child(mut self, child_relationship: &str) -> FieldDef {
        self.child_relationship = Some(child_relationship.to_string());
        self
    }

    pub fn name_field(mut self) -> FieldDef {
        self.name_field = true;
        self
    }

    pub fn calculated(mut self) -> FieldDef {
        self.calculated = true;
        self.ro()
    }

    pub fn not_null(mut self) -> FieldDef {
        self.nillable = false;
        self
    }
}

/// A child relationship as seen from the parent (`Account.Contacts`).
#[derive(Clone, Debug)]
pub struct ChildRel {
    pub relationship_name: String,
    pub child_object: String,
    pub field: String,
}

/// One object (sObject type).
#[derive(Clone, Debug)]
pub struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: String,
    pub custom: bool,
    pub createable: bool,
    pub updateable: bool,
    pub deletable: bool,
    pub queryable: bool,
    pub searchable: bool,
    pub fields: Vec<FieldDef>,
}

impl ObjectDef {
    /// Case-insensitive field lookup, ignoring field-level security.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Case-insensitive lookup of a lookup field by its relationship name (`Owner` -> OwnerId).
    pub fn field_by_relationship(&self, rel: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel))
        })
    }

    /// The fields a `NAME FIELDS` search looks at.
    pub fn name_fields(&self) -> Vec<&FieldDef> {
        self.fields.iter().filter(|f| f.name_field).collect()
    }
}

/// Data types a custom field may be declared with ([`crate::Org::add_custom_field`]).
#[derive(Clone, Debug, PartialEq)]
pub enum CustomFieldType {
    String,
    TextArea,
    Phone,
    Email,
    Url,
    Number,
    Checkbox,
    Date,
    DateTime,
    /// Unrestricted picklist.
    Picklist(Vec<String>),
    /// Restricted picklist: any other value -> INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST.
    RestrictedPicklist(Vec<String>),
    /// Multi-select picklist (values joined with `;`), unrestricted.
    MultiPicklist(Vec<String>),
    /// Lookup to another object; the relationship name is the field name with `__r`.
    Lookup(String),
}

/// A custom field with its options ([`crate::Org::add_custom_field_with`]).
#[derive(Clone, Debug)]
pub struct CustomField {
    /// API name; `__c` is appended when missing.
    pub name: String,
    /// Defaults to the name without `__c`, underscores as spaces.
    pub label: Option<String>,
    pub field_type: CustomFieldType,
    /// "Required" on the field definition: REQUIRED_FIELD_MISSING when absent on create.
    pub required: bool,
    pub external_id: bool,
}

impl CustomField {
    pub fn new(name: &str, field_type: CustomFieldType) -> CustomField {
        CustomField {
            name: name.to_string(),
            label: None,
            field_type,
            required: false,
            external_id: false,
        }
    }

    pub fn required(mut self) -> CustomField {
        self.required = true;
        self
    }

    pub fn label(mut self, label: &str) -> CustomField {
        self.label = Some(label.to_string());
        self
    }

    pub fn external_id(mut self) -> CustomField {
        self.external_id = true;
        self
    }
}

/// Errors when declaring schema.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("object {0} already exists")]
    ObjectExists(String),
    #[error("no object {0}")]
    NoObject(String),
    #[error("field {0} already exists on {1}")]
    FieldExists(String, String),
    #[error("invalid custom name {0}: custom objects and fields end in __c")]
    BadName(String),
    #[error("invalid key prefix {0}: three alphanumeric characters")]
    BadPrefix(String),
}

/// The schema of one org.
#[derive(Clone, Debug)]
pub struct Schema {
    objects: Vec<ObjectDef>,
    denied_objects: HashSet<String>,
    denied_fields: HashSet<(String, String)>,
    next_custom_prefix: u32,
}

fn label_from_api_name(name: &str) -> String {
    name.trim_end_matches("__c").replace('_', " ")
}

impl Schema {
    /// The standard objects; Person Account fields on Account only if the org has them.
    pub fn standard(person_accounts: bool) -> Schema {
        Schema {
            objects: vec![
                account(person_accounts),
                contact(),
                lead(),
                task(),
                case(),
                user(),
            ],
            denied_objects: HashSet::new(),
            denied_fields: HashSet::new(),
            next_custom_prefix: 0,
        }
    }

    pub fn objects(&self) -> impl Iterator<Item = &ObjectDef> {
        self.objects.iter()
    }

    /// Objects the API user can see.
    pub fn visible_objects(&self) -> impl Iterator<Item = &ObjectDef> {
        self.objects
            .iter()
            .filter(|o| !self.denied_objects.contains(&o.name.to_ascii_lowercase()))
    }

    /// Any object, ignoring security (seeding, internal bookkeeping).
    pub fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.objects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    fn object_mut(&mut self, name: &str) -> Option<&mut ObjectDef> {
        self.objects
            .iter_mut()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// An object the API user can access; a denied object behaves as if it did not exist
    /// (the real service answers INVALID_TYPE in SOQL and NOT_FOUND on sobjects URLs).
    pub fn visible_object(&self, name: &str) -> Option<&ObjectDef> {
        self.object(name)
            .filter(|o| !self.denied_objects.contains(&o.name.to_ascii_lowercase()))
    }

    pub fn object_by_prefix(&self, prefix: &str) -> Option<&ObjectDef> {
        self.objects.iter().find(|o| o.key_prefix == prefix)
    }

    /// A field the API user can see (field-level security applied).
    pub fn visible_field<'a>(&self, obj: &'a ObjectDef, name: &str) -> Option<&'a FieldDef> {
        obj.field(name).filter(|f| self.field_visible(obj, f))
    }

    pub fn field_visible(&self, obj: &ObjectDef, f: &FieldDef) -> bool {
        !self
            .denied_fields
            .contains(&(obj.name.to_ascii_lowercase(), f.name.to_ascii_lowercase()))
    }

    pub fn deny_field(&mut self, sobject: &str, field: &str) {
        self.denied_fields
            .insert((sobject.to_ascii_lowercase(), field.to_ascii_lowercase()));
    }

    pub fn deny_object(&mut self, sobject: &str) {
        self.denied_objects.insert(sobject.to_ascii_lowercase());
    }

    /// The concrete object names a lookup field may point at.
    pub fn reference_targets(&self, f: &FieldDef) -> Vec<String> {
        let mut out = Vec::new();
        for t in &f.reference_to {
            if t == ANY_WHAT {
                for o in &self.objects {
                    if !matches!(o.name.as_str(), "Contact" | "Lead" | "User" | "Task") {
                        out.push(o.name.clone());
                    }
                }
            } else {
                out.push(t.clone());
            }
        }
        out
    }

    /// Child relationships of an object, derived from every lookup that names it.
    pub fn children_of(&self, parent: &str) -> Vec<ChildRel> {
        let mut out = Vec::new();
        for o in &self.objects {
            for f in &o.fields {
                if f.ftype != FieldType::Reference {
                    continue;
                }
                let Some(rel) = &f.child_relationship else {
                    continue;
                };
                if self
                    .reference_targets(f)
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(parent))
                {
                    out.push(ChildRel {
                        relationship_name: rel.clone(),
                        child_object: o.name.clone(),
                        field: f.name.clone(),
                    });
                }
            }
        }
        out
    }

    /// Declares a custom object with the standard custom-object fields. Key prefixes are
    /// handed out `a00`, `a01`, … in order of declaration unless one is given (the
    /// recordings' Movie__c is `a00`, random__c `a01`).
    pub fn add_custom_object(
        &mut self,
        name: &str,
        key_prefix: Option<&str>,
    ) -> Result<String, SchemaError> {
        if !name.ends_with("__c") || name.len() <= 3 {
            return Err(SchemaError::BadName(name.to_string()));
        }
        if self.object(name).is_some() {
            return Err(SchemaError::ObjectExists(name.to_string()));
        }
        let prefix = match key_prefix {
            Some(p) => {
                if p.len() != 3 || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(SchemaError::BadPrefix(p.to_string()));
                }
                p.to_string()
            }
            None => loop {
                let n = self.next_custom_prefix;
                self.next_custom_prefix += 1;
                let candidate = format!("a{:02}", n);
                if self.object_by_prefix(&candidate).is_none() {
                    break candidate;
                }
            },
        };
        let label = label_from_api_name(name);
        let mut fields = system_fields(&label, true);
        fields.insert(
            1,
            FieldDef::new("Name", &format!("{label} Name"), FieldType::String)
                .len(80)
                .name_field()
                .not_null(),
        );
        self.objects.push(ObjectDef {
            name: name.to_string(),
            label: label.clone(),
            label_plural: format!("{label}s"),
            key_prefix: prefix.clone(),
            custom: true,
            createable: true,
            updateable: true,
            deletable: true,
            queryable: true,
            searchable: true,
            fields,
        });
        Ok(prefix)
    }

    /// Declares a custom field on an object (standard or custom).
    pub fn add_custom_field(
        &mut self,
        sobject: &str,
        spec: CustomField,
    ) -> Result<(), SchemaError> {
        let name = if spec.name.ends_with("__c") {
            spec.name.clone()
        } else {
            format!("{}__c", spec.name)
        };
        if name.len() <= 3 {
            return Err(SchemaError::BadName(name));
        }
        let label = spec
            .label
            .clone()
            .unwrap_or_else(|| label_from_api_name(&name));
        let mut f = match &spec.field_type {
            CustomFieldType::String => FieldDef::new(&name, &label, FieldType::String),
            CustomFieldType::TextArea => FieldDef::new(&name, &label, FieldType::TextArea),
            CustomFieldType::Phone => FieldDef::new(&name, &label, FieldType::Phone),
            CustomFieldType::Email => FieldDef::new(&name, &label, FieldType::Email),
            CustomFieldType::Url => FieldDef::new(&name, &label, FieldType::Url),
            CustomFieldType::Number => FieldDef::new(&name, &label, FieldType::Double),
            CustomFieldType::Checkbox => FieldDef::new(&name, &label, FieldType::Boolean),
            CustomFieldType::Date => FieldDef::new(&name, &label, FieldType::Date),
            CustomFieldType::DateTime => FieldDef::new(&name, &label, FieldType::DateTime),
            CustomFieldType::Picklist(v) => {
                let mut f = FieldDef::new(&name, &label, FieldType::Picklist);
                f.picklist = v.clone();
                f
            }
            CustomFieldType::RestrictedPicklist(v) => {
                let mut f = FieldDef::new(&name, &label, FieldType::Picklist).restricted();
                f.picklist = v.clone();
                f
            }
            CustomFieldType::MultiPicklist(v) => {
                let mut f = FieldDef::new(&name, &label, FieldType::MultiPicklist);
                f.picklist = v.clone();
                f
            }
            CustomFieldType::Lookup(target) => {
                let target = self
                    .object(target)
                    .map(|o| o.name.clone())
                    .ok_or_else(|| SchemaError::NoObject(target.clone()))?;
                let rel = format!("{}__r", name.trim_end_matches("__c"));
                let owner_label = self
                    .object(sobject)
                    .map(|o| o.label_plural.replace(' ', "_"))
                    .unwrap_or_default();
                FieldDef::new(&name, &label, FieldType::Reference)
                    .refs(&[target.as_str()], &rel)
                    .child(&format!("{owner_label}__r"))
            }
        };
        f.custom = true;
        f.external_id = spec.external_id;
        if spec.required {
            f = f.req();
        }
        let obj = self
            .object_mut(sobject)
            .ok_or_else(|| SchemaError::NoObject(sobject.to_string()))?;
        if obj.field(&name).is_some() {
            return Err(SchemaError::FieldExists(name, obj.name.clone()));
        }
        obj.fields.push(f);
        Ok(())
    }
}

// ---- standard objects ------------------------------------------------------------------

use FieldType as T;

/// Id, OwnerId, IsDeleted and the audit fields every object carries.
fn system_fields(object_label: &str, with_owner: bool) -> Vec<FieldDef> {
    let mut v = vec![
        FieldDef::new("Id", &format!("{object_label} ID"), T::Id).ro(),
        FieldDef::new("IsDeleted", "Deleted", T::Boolean).ro(),
    ];
    if with_owner {
        v.push(
            FieldDef::new("OwnerId", "Owner ID", T::Reference)
                .refs(&["User"], "Owner")
                .not_null(),
        );
    }
    v.extend([
        FieldDef::new("CreatedDate", "Created Date", T::DateTime)
            .ro()
            .not_null(),
        FieldDef::new("CreatedById", "Created By ID", T::Reference)
            .refs(&["User"], "CreatedBy")
            .ro()
            .not_null(),
        FieldDef::new("LastModifiedDate", "Last Modified Date", T::DateTime)
            .ro()
            .not_null(),
        FieldDef::new("LastModifiedById", "Last Modified By ID", T::Reference)
            .refs(&["User"], "LastModifiedBy")
            .ro()
            .not_null(),
        FieldDef::new("SystemModstamp", "System Modstamp", T::DateTime)
            .ro()
            .not_null(),
    ]);
    v
}

fn object(name: &str, label: &str, plural: &str, prefix: &str, fields: Vec<FieldDef>) -> ObjectDef {
    ObjectDef {
        name: name.to_string(),
        label: label.to_string(),
        label_plural: plural.to_string(),
        key_prefix: prefix.to_string(),
        custom: false,
        createable: true,
        updateable: true,
        deletable: true,
        queryable: true,
        searchable: true,
        fields,
    }
}

const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
const SALUTATIONS: &[&str] = &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."];
const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
];

fn account(person_accounts: bool) -> ObjectDef {
    let mut f = system_fields("Account", true);
    f.extend([
        FieldDef::new("MasterRecordId", "Master Record ID", T::Reference)
            .refs(&["Account"], "MasterRecord")
            .ro(),
        // Required for business accounts; for person accounts it is derived from the name
        // parts (checked in `dml`, not here).
        FieldDef::new("Name", "Account Name", T::String)
            .name_field()
            .not_null(),
        FieldDef::new("Type", "Account Type", T::Picklist).pick(&[
            "Prospect",
            "Customer - Direct",
            "Customer - Channel",
            "Channel Partner / Reseller",
            "Installation Partner",
            "Technology Partner",
            "Other",
        ]),
        FieldDef::new("ParentId", "Parent Account ID", T::Reference)
            .refs(&["Account"], "Parent")
            .child("ChildAccounts"),
        FieldDef::new("BillingStreet", "Billing Street", T::TextArea).len(255),
        FieldDef::new("BillingCity", "Billing City", T::String).len(40),
        FieldDef::new("BillingState", "Billing State/Province", T::String).len(80),
        FieldDef::new("BillingPostalCode", "Billing Zip/Postal Code", T::String).len(20),
        FieldDef::new("BillingCountry", "Billing Country", T::String).len(80),
        FieldDef::new("Phone", "Account Phone", T::Phone),
        FieldDef::new("Fax", "Account Fax", T::Phone),
        FieldDef::new("AccountNumber", "Account Number", T::String).len(40),
        FieldDef::new("Website", "Website", T::Url),
        FieldDef::new("Industry", "Industry", T::Picklist).pick(INDUSTRIES),
        FieldDef::new("AnnualRevenue", "Annual Revenue", T::Currency),
        FieldDef::new("NumberOfEmployees", "Employees", T::Int),
        FieldDef::new("Description", "Account Description", T::TextArea),
        FieldDef::new("Rating", "Account Rating", T::Picklist).pick(&["Hot", "Warm", "Cold"]),
        FieldDef::new("AccountSource", "Account Source", T::Picklist).pick(LEAD_SOURCES),
        FieldDef::new("LastActivityDate", "Last Activity", T::Date).ro(),
    ]);
    if person_accounts {
        f.extend([
            FieldDef::new("IsPersonAccount", "Is Person Account", T::Boolean).ro(),
            FieldDef::new("FirstName", "First Name", T::String).len(40),
            FieldDef::new("LastName", "Last Name", T::String).len(80),
            FieldDef::new("Salutation", "Salutation", T::Picklist).pick(SALUTATIONS),
            FieldDef::new("PersonMobilePhone", "Mobile", T::Phone),
            FieldDef::new("PersonHomePhone", "Home Phone", T::Phone),
            FieldDef::new("PersonOtherPhone", "Other Phone", T::Phone),
            FieldDef::new("PersonEmail", "Email", T::Email),
            FieldDef::new("PersonTitle", "Title", T::String).len(80),
            FieldDef::new("PersonContactId", "Person Contact ID", T::Reference)
                .refs(&["Contact"], "PersonContact")
                .ro(),
        ]);
    }
    object("Account", "Account", "Accounts", "001", f)
}

fn contact() -> ObjectDef {
    let mut f = system_fields("Contact", true);
    f.extend([
        FieldDef::new("MasterRecordId", "Master Record ID", T::Reference)
            .refs(&["Contact"], "MasterRecord")
            .ro(),
        FieldDef::new("AccountId", "Account ID", T::Reference)
            .refs(&["Account"], "Account")
            .child("Contacts"),
        FieldDef::new("LastName", "Last Name", T::String)
            .len(80)
            .req(),
        FieldDef::new("FirstName", "First Name", T::String).len(40),
        FieldDef::new("Salutation", "Salutation", T::Picklist).pick(SALUTATIONS),
        FieldDef::new("Name", "Full Name", T::String)
            .len(121)
            .name_field()
            .ro()
            .not_null(),
        FieldDef::new("MailingStreet", "Mailing Street", T::TextArea).len(255),
        FieldDef::new("MailingCity", "Mailing City", T::String).len(40),
        FieldDef::new("MailingState", "Mailing State/Province", T::String).len(80),
        FieldDef::new("MailingPostalCode", "Mailing Zip/Postal Code", T::String).len(20),
        FieldDef::new("MailingCountry", "Mailing Country", T::String).len(80),
        FieldDef::new("Phone", "Business Phone", T::Phone),
        FieldDef::new("Fax", "Business Fax", T::Phone),
        FieldDef::new("MobilePhone", "Mobile Phone", T::Phone),
        FieldDef::new("HomePhone", "Home Phone", T::Phone),
        FieldDef::new("OtherPhone", "Other Phone", T::Phone),
        FieldDef::new("AssistantPhone", "Asst. Phone", T::Phone),
        FieldDef::new("ReportsToId", "Reports To ID", T::Reference).refs(&["Contact"], "ReportsTo"),
        FieldDef::new("Email", "Email", T::Email),
        FieldDef::new("Title", "Title", T::String).len(128),
        FieldDef::new("Department", "Department", T::String).len(80),
        FieldDef::new("AssistantName", "Assistant's Name", T::String).len(40),
        FieldDef::new("LeadSource", "Lead Source", T::Picklist).pick(LEAD_SOURCES),
        FieldDef::new("Birthdate", "Birthdate", T::Date),
        FieldDef::new("Description", "Contact Description", T::TextArea),
        FieldDef::new("LastActivityDate", "Last Activity", T::Date).ro(),
    ]);
    object("Contact", "Contact", "Contacts", "003", f)
}

fn lead() -> ObjectDef {
    let mut f = system_fields("Lead", true);
    f.extend([
        FieldDef::new("MasterRecordId", "Master Record ID", T::Reference)
            .refs(&["Lead"], "MasterRecord")
            .ro(),
        FieldDef::new("LastName", "Last Name", T::String)
            .len(80)
            .req(),
        FieldDef::new("FirstName", "First Name", T::String).len(40),
        FieldDef::new("Salutation", "Salutation", T::Picklist).pick(SALUTATIONS),
        FieldDef::new("Name", "Full Name", T::String)
            .len(121)
            .name_field()
            .ro()
            .not_null(),
        FieldDef::new("Title", "Title", T::String).len(128),
        FieldDef::new("Company", "Company", T::String).req(),
        FieldDef::new("Street", "Street", T::TextArea).len(255),
        FieldDef::new("City", "City", T::String).len(40),
        FieldDef::new("State", "State/Province", T::String).len(80),
        FieldDef::new("PostalCode", "Zip/Postal Code", T::String).len(20),
        FieldDef::new("Country", "Country", T::String).len(80),
        FieldDef::new("Phone", "Phone", T::Phone),
        FieldDef::new("MobilePhone", "Mobile Phone", T::Phone),
        FieldDef::new("Fax", "Fax", T::Phone),
        FieldDef::new("Email", "Email", T::Email),
        FieldDef::new("Website", "Website", T::Url),
        FieldDef::new("Description", "Description", T::TextArea),
        FieldDef::new("LeadSource", "Lead Source", T::Picklist).pick(LEAD_SOURCES),
        FieldDef::new("Status", "Status", T::Picklist)
            .pick(&[
                "Open - Not Contacted",
                "Working - Contacted",
                "Closed - Converted",
                "Closed - Not Converted",
            ])
            .default("Open - Not Contacted"),
        FieldDef::new("Industry", "Industry", T::Picklist).pick(INDUSTRIES),
        FieldDef::new("Rating", "Rating", T::Picklist).pick(&["Hot", "Warm", "Cold"]),
        FieldDef::new("AnnualRevenue", "Annual Revenue", T::Currency),
        FieldDef::new("NumberOfEmployees", "Employees", T::Int),
        FieldDef::new("IsConverted", "Converted", T::Boolean).ro(),
        FieldDef::new("ConvertedDate", "Converted Date", T::Date).ro(),
        FieldDef::new("ConvertedAccountId", "Converted Account ID", T::Reference)
            .refs(&["Account"], "ConvertedAccount")
            .ro(),
        FieldDef::new("ConvertedContactId", "Converted Contact ID", T::Reference)
            .refs(&["Contact"], "ConvertedContact")
            .ro(),
        FieldDef::new("IsUnreadByOwner", "Unread By Owner", T::Boolean),
        FieldDef::new("LastActivityDate", "Last Activity", T::Date).ro(),
    ]);
    object("Lead", "Lead", "Leads", "00Q", f)
}

fn task() -> ObjectDef {
    let mut f = system_fields("Activity", true);
    if let Some(owner) = f.iter_mut().find(|x| x.name == "OwnerId") {
        owner.label = "Assigned To ID".to_string();
    }
    f.extend([
        FieldDef::new("WhoId", "Name ID", T::Reference)
            .refs(&["Contact", "Lead"], "Who")
            .child("Tasks"),
        FieldDef::new("WhatId", "Related To ID", T::Reference)
            .refs(&[ANY_WHAT], "What")
            .child("Tasks"),
        FieldDef::new("Subject", "Subject", T::String),
        FieldDef::new("ActivityDate", "Due Date Only", T::Date),
        FieldDef::new("Status", "Status", T::Picklist)
            .pick(&[
                "Not Started",
                "In Progress",
                "Completed",
                "Waiting on someone else",
                "Deferred",
            ])
            .default("Not Started"),
        FieldDef::new("Priority", "Priority", T::Picklist)
            .pick(&["High", "Normal", "Low"])
            .default("Normal"),
        FieldDef::new("IsHighPriority", "High Priority", T::Boolean).ro(),
        FieldDef::new("Description", "Comments", T::TextArea),
        FieldDef::new("AccountId", "Account ID", T::Reference)
            .refs(&["Account"], "Account")
            .calculated(),
        FieldDef::new("IsClosed", "Closed", T::Boolean).ro(),
        FieldDef::new("CallDurationInSeconds", "Call Duration", T::Int),
        FieldDef::new("CallType", "Call Type", T::Picklist)
            .pick(&["Inbound", "Internal", "Outbound"])
            .restricted(),
        FieldDef::new("CallDisposition", "Call Result", T::String),
        FieldDef::new("CallObject", "Call Object Identifier", T::String),
        FieldDef::new("ReminderDateTime", "Reminder Date/Time", T::DateTime),
        FieldDef::new("IsReminderSet", "Reminder Set", T::Boolean),
        FieldDef::new("CompletedDateTime", "Completed Date/Time", T::DateTime).ro(),
        // [UNCONFIRMED] value list and create-only rule (docs/salesforce-api.md §5).
        FieldDef::new("TaskSubtype", "Task Subtype", T::Picklist)
            .pick(&["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"])
            .restricted()
            .default("Task")
            .create_only(),
    ]);
    let mut o = object("Task", "Task", "Tasks", "00T", f);
    o.searchable = true;
    o
}

fn case() -> ObjectDef {
    let mut f = system_fields("Case", true);
    f.extend([
        FieldDef::new("MasterRecordId", "Master Record ID", T::Reference)
            .refs(&["Case"], "MasterRecord")
            .ro(),
        FieldDef::new("CaseNumber", "Case Number", T::String)
            .len(30)
            .name_field()
            .ro()
            .not_null(),
        FieldDef::new("ContactId", "Contact ID", T::Reference)
            .refs(&["Contact"], "Contact")
            .child("Cases"),
        FieldDef::new("AccountId", "Account ID", T::Reference)
            .refs(&["Account"], "Account")
            .child("Cases"),
        FieldDef::new("ParentId", "Parent Case ID", T::Reference).refs(&["Case"], "Parent"),
        FieldDef::new("SuppliedName", "Web Name", T::String).len(80),
        FieldDef::new("SuppliedEmail", "Web Email", T::Email),
        FieldDef::new("SuppliedPhone", "Web Phone", T::String).len(40),
        FieldDef::new("SuppliedCompany", "Web Company", T::String).len(80),
        FieldDef::new("Type", "Case Type", T::Picklist).pick(&[
            "Mechanical",
            "Electrical",
            "Electronic",
            "Structural",
            "Other",
        ]),
        FieldDef::new("Status", "Status", T::Picklist)
            .pick(&["New", "Working", "Escalated", "Closed"])
            .default("New"),
        FieldDef::new("Reason", "Case Reason", T::Picklist).pick(&[
            "Installation",
            "Equipment Complexity",
            "Performance",
            "Breakdown",
            "Equipment Design",
            "Feedback",
            "Other",
        ]),
        FieldDef::new("Origin", "Case Origin", T::Picklist).pick(&["Phone", "Email", "Web"]),
        FieldDef::new("Subject", "Subject", T::String),
        FieldDef::new("Priority", "Priority", T::Picklist)
            .pick(&["High", "Medium", "Low"])
            .default("Medium"),
        FieldDef::new("Description", "Description", T::TextArea),
        FieldDef::new("IsClosed", "Closed", T::Boolean).ro(),
        FieldDef::new("ClosedDate", "Closed Date", T::DateTime).ro(),
        FieldDef::new("IsEscalated", "Escalated", T::Boolean),
        FieldDef::new("ContactPhone", "Contact Phone", T::Phone).calculated(),
        FieldDef::new("ContactMobile", "Contact Mobile", T::Phone).calculated(),
        FieldDef::new("ContactEmail", "Contact Email", T::Email).calculated(),
    ]);
    object("Case", "Case", "Cases", "500", f)
}

fn user() -> ObjectDef {
    let mut f = system_fields("User", false);
    f.extend([
        FieldDef::new("Username", "Username", T::String)
            .len(80)
            .req(),
        FieldDef::new("LastName", "Last Name", T::String)
            .len(80)
            .req(),
        FieldDef::new("FirstName", "First Name", T::String).len(40),
        FieldDef::new("Name", "Full Name", T::String)
            .len(121)
            .name_field()
            .ro()
            .not_null(),
        FieldDef::new("CompanyName", "Company Name", T::String).len(80),
        FieldDef::new("Department", "Department", T::String).len(80),
        FieldDef::new("Title", "Title", T::String).len(80),
        FieldDef::new("Email", "Email", T::Email).req(),
        FieldDef::new("Phone", "Phone", T::Phone),
        FieldDef::new("Fax", "Fax", T::Phone),
        FieldDef::new("MobilePhone", "Mobile", T::Phone),
        FieldDef::new("Extension", "Extension", T::Phone),
        FieldDef::new("Alias", "Alias", T::String).len(8),
        FieldDef::new("IsActive", "Active", T::Boolean).default("true"),
        FieldDef::new("FederationIdentifier", "SAML Federation ID", T::String).len(512),
        FieldDef::new("TimeZoneSidKey", "Time Zone", T::Picklist)
            .pick(&["Asia/Tokyo", "America/Los_Angeles", "Europe/London", "GMT"])
            .default("Asia/Tokyo"),
    ]);
    let mut o = object("User", "User", "Users", "005", f);
    // The integration user cannot create or edit users through this stand-in's API.
    o.createable = false;
    o.updateable = false;
    o.deletable = false;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        let s = Schema::standard(false);
        assert_eq!(
            s.object("account").map(|o| o.name.as_str()),
            Some("Account")
        );
        let task = s.object("TASK").expect("task");
        assert_eq!(
            task.field("calltype").map(|f| f.name.as_str()),
            Some("CallType")
        );
        assert!(
            s.object("Account")
                .and_then(|o| o.field("PersonEmail"))
                .is_none()
        );
        let pa = Schema::standard(true);
        assert!(
            pa.object("Account")
                .and_then(|o| o.field("PersonEmail"))
                .is_some()
        );
    }

    #[test]
    fn children_and_custom_objects() {
        let mut s = Schema::standard(false);
        let names: Vec<_> = s
            .children_of("Account")
            .into_iter()
            .map(|c| c.relationship_name)
            .collect();
        assert!(names.contains(&"Contacts".to_string()));
        assert!(names.contains(&"Tasks".to_string()));
        assert_eq!(s.add_custom_object("Movie__c", None), Ok("a00".to_string()));
        assert_eq!(
            s.add_custom_object("random__c", None),
            Ok("a01".to_string())
        );
        assert!(s.add_custom_object("Movie__c", None).is_err());
        assert!(s.add_custom_object("Movie", None).is_err());
        s.add_custom_field(
            "Movie__c",
            CustomField::new("Rating", CustomFieldType::Picklist(vec![])),
        )
        .expect("field");
        assert!(
            s.object("movie__c")
                .and_then(|o| o.field("Rating__c"))
                .is_some()
        );
        // Task.WhatId may point at custom objects too.
        let what = s
            .object("Task")
            .and_then(|o| o.field("WhatId"))
            .cloned()
            .expect("whatid");
        assert!(s.reference_targets(&what).contains(&"Movie__c".to_string()));
    }

    #[test]
    fn deny_hides() {
        let mut s = Schema::standard(false);
        s.deny_object("Lead");
        s.deny_field("Contact", "MobilePhone");
        assert!(s.visible_object("lead").is_none());
        assert!(s.object("lead").is_some());
        let c = s.object("Contact").expect("contact").clone();
        assert!(s.visible_field(&c, "mobilephone").is_none());
        assert!(s.visible_field(&c, "Phone").is_some());
    }
}
