//! The store's edge for the domain's enums: each is a TEXT column holding its stored
//! spelling, bound and read as the enum itself, so rows carry `TipStatus`, not `String`.
//! A spelling the program does not know fails the row's decoding with the column's name and
//! the value, instead of travelling on as a string nobody matches.
//!
//! Flags (`enrolled`, `on_duty`, `active`, …) are BIGINT columns holding 0 or 1, and sqlx
//! decodes an integer into `bool` through `Any` on neither backend; a row declares them
//! `#[sqlx(try_from = "Flag")] pub active: bool`, and [`Flag`] reads the integer; serialized,
//! it is written as stored ([`serialize_flag`]).

use sqlx::any::{Any, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::domain::{
    AssignmentRole, BroadcastKind, BroadcastStatus, CapStatus, Datum, DeliveryState, Grant, OfficeKind, OfficerKind,
    Rating, Severity, TipSource, TipStatus, VillageKind,
};

/// A 0/1 flag column as it is stored; rows expose it as `bool` through
/// `#[sqlx(try_from = "Flag")]`, and a query binds `Flag::from(b)` (or `i64::from(b)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl From<bool> for Flag {
    fn from(b: bool) -> Flag {
        Flag(b)
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl Encode<'_, Any> for Flag {
    fn encode_by_ref(&self, buf: &mut <Any as Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Any>>::encode(i64::from(self.0), buf)
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Flag(<i64 as Decode<Any>>::decode(value)? != 0))
    }
}

/// Writes a flag as it is stored, 0 or 1, as enums are written as their stored spelling:
/// JSON exports and templates see what they saw before rows carried `bool`
/// (`#[serde(serialize_with = "super::mapping::serialize_flag")]`).
pub(crate) fn serialize_flag<S: serde::Serializer>(flag: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(i64::from(*flag))
}

macro_rules! text_column {
    ($($name:ty),+ $(,)?) => {$(
        impl Type<Any> for $name {
            fn type_info() -> AnyTypeInfo {
                <str as Type<Any>>::type_info()
            }
        }

        impl Encode<'_, Any> for $name {
            fn encode_by_ref(&self, buf: &mut <Any as Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let stored = <&str as Decode<Any>>::decode(value)?;
                <$name>::from_code(stored).ok_or_else(|| {
                    format!("{stored:?} is not a {}; the database holds a value this version does not know", stringify!($name)).into()
                })
            }
        }
    )+};
}

text_column!(
    AssignmentRole,
    BroadcastKind,
    BroadcastStatus,
    CapStatus,
    Datum,
    DeliveryState,
    Grant,
    OfficeKind,
    OfficerKind,
    Rating,
    Severity,
    TipSource,
    TipStatus,
    VillageKind,
);

#[cfg(test)]
mod tests {
    use crate::domain::TipStatus;
    use crate::store::{Store, StoreOptions};

    async fn memory_store() -> Store {
        let opts = StoreOptions {
            url: "sqlite::memory:".into(),
            max_connections: 1,
            busy_timeout: std::time::Duration::from_secs(1),
        };
        Store::connect(&opts).await.expect("store")
    }

    #[tokio::test]
    async fn a_status_is_bound_and_read_back_as_itself_and_an_unknown_spelling_is_an_error() {
        let store = memory_store().await;
        let pool = store.pool();
        let back: TipStatus =
            sqlx::query_scalar("SELECT $1").bind(TipStatus::InProgress).fetch_one(pool).await.unwrap();
        assert_eq!(back, TipStatus::InProgress);
        let err = sqlx::query_scalar::<_, TipStatus>("SELECT 'pending'").fetch_one(pool).await.unwrap_err();
        assert!(format!("{err}").contains("\"pending\" is not a TipStatus"), "{err}");
    }

    #[tokio::test]
    async fn a_flag_column_reads_as_a_bool_through_flag_and_not_directly() {
        let store = memory_store().await;
        let pool = store.pool();
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(try_from = "super::Flag")]
            enrolled: bool,
            #[sqlx(try_from = "super::Flag")]
            on_duty: bool,
        }
        let row: Row = sqlx::query_as("SELECT CAST(1 AS BIGINT) AS enrolled, CAST(0 AS BIGINT) AS on_duty")
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(row.enrolled && !row.on_duty);
        let back: super::Flag = sqlx::query_scalar("SELECT $1").bind(super::Flag(true)).fetch_one(pool).await.unwrap();
        assert!(bool::from(back));
        // Why `Flag` exists: sqlx does not read an integer as `bool` through `Any`.
        assert!(sqlx::query_scalar::<_, bool>("SELECT CAST(1 AS BIGINT)").fetch_one(pool).await.is_err());
    }
}
