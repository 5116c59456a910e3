//! The QBO entities we extract. An allowlist: nothing the user types is ever pasted into a
//! query as an entity name.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    Invoice,
    Customer,
    Item,
}

impl Entity {
    pub const ALL: [Entity; 3] = [Entity::Invoice, Entity::Customer, Entity::Item];

    /// The canonical QBO name, as it appears in queries and as the QueryResponse key.
    pub fn qbo_name(self) -> &'static str {
        match self {
            Entity::Invoice => "Invoice",
            Entity::Customer => "Customer",
            Entity::Item => "Item",
        }
    }

    /// Lower-case singular, used in labels (`invoice_backfill_2025-10-15`) and the CLI.
    pub fn slug(self) -> &'static str {
        match self {
            Entity::Invoice => "invoice",
            Entity::Customer => "customer",
            Entity::Item => "item",
        }
    }

    /// What every window label of this entity starts with: `invoice_backfill` in
    /// `invoice_backfill_2025-10-15` (the one rule, for plans, stages and the CLI alike).
    pub fn label_prefix(self) -> String {
        format!("{}_backfill", self.slug())
    }

    /// Lower-case plural: file names (`invoices.txt`), tables (`qb_invoices`) and the
    /// `Total <entidad> descargadas` log line.
    pub fn plural(self) -> &'static str {
        match self {
            Entity::Invoice => "invoices",
            Entity::Customer => "customers",
            Entity::Item => "items",
        }
    }

    /// Name lists hide inactive records unless the query filters on `Active`
    /// (Intuit's query docs), so every query for them carries `Active IN (true,false)`.
    pub fn is_name_list(self) -> bool {
        matches!(self, Entity::Customer | Entity::Item)
    }

    /// Transactions carry a business date (`TxnDate`); name lists do not.
    pub fn has_txn_date(self) -> bool {
        matches!(self, Entity::Invoice)
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qbo_name())
    }
}

impl FromStr for Entity {
    type Err = Error;

    /// Accepts `invoice`, `Invoice`, `INVOICES`, … (singular or plural, any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lowered = s.trim().to_ascii_lowercase();
        Entity::ALL
            .into_iter()
            .find(|e| lowered == e.slug() || lowered == e.plural())
            .ok_or_else(|| Error::config(format!("unknown entity {s:?}: expected one of invoice, customer, item")))
    }
}

/// The timestamp that decides which window a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum FilterField {
    #[default]
    LastUpdatedTime,
    CreateTime,
    TxnDate,
}

impl FilterField {
    /// As the option takes it: `LastUpdatedTime`, `CreateTime`, `TxnDate`.
    pub fn name(self) -> &'static str {
        match self {
            FilterField::LastUpdatedTime => "LastUpdatedTime",
            FilterField::CreateTime => "CreateTime",
            FilterField::TxnDate => "TxnDate",
        }
    }

    pub fn qbo_property(self) -> &'static str {
        match self {
            FilterField::LastUpdatedTime => "MetaData.LastUpdatedTime",
            FilterField::CreateTime => "MetaData.CreateTime",
            FilterField::TxnDate => "TxnDate",
        }
    }

    /// Whether an edit can only move a record's value forward, to "now": true for the two
    /// timestamps QBO sets itself (CreateTime never changes), false for TxnDate, which a user
    /// may set to any day.
    pub fn only_moves_forward(self) -> bool {
        self != FilterField::TxnDate
    }

    pub fn check_supported_by(self, entity: Entity) -> Result<(), Error> {
        if self == FilterField::TxnDate && !entity.has_txn_date() {
            return Err(Error::config(format!("filter field TxnDate does not exist on {entity}: use LastUpdatedTime or CreateTime")));
        }
        Ok(())
    }
}

impl FromStr for FilterField {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        match key.as_str() {
            "lastupdatedtime" | "metadatalastupdatedtime" | "lastupdated" => Ok(FilterField::LastUpdatedTime),
            "createtime" | "metadatacreatetime" => Ok(FilterField::CreateTime),
            "txndate" => Ok(FilterField::TxnDate),
            _ => Err(Error::config(format!("unknown filter field {s:?}: expected LastUpdatedTime, CreateTime or TxnDate"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_case_singular_or_plural() {
        assert_eq!("INVOICE".parse::<Entity>().unwrap(), Entity::Invoice);
        assert_eq!("customers".parse::<Entity>().unwrap(), Entity::Customer);
        assert_eq!(" Item ".parse::<Entity>().unwrap(), Entity::Item);
        assert!("Invoice; DROP".parse::<Entity>().is_err());
        assert!("bill".parse::<Entity>().is_err());
    }

    #[test]
    fn txn_date_only_for_transactions() {
        assert!(FilterField::TxnDate.check_supported_by(Entity::Invoice).is_ok());
        assert!(FilterField::TxnDate.check_supported_by(Entity::Customer).is_err());
        assert_eq!("MetaData.CreateTime".parse::<FilterField>().unwrap(), FilterField::CreateTime);
    }
}
