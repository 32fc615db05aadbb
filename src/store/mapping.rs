//! The store's edge for the domain's enums: each is a TEXT column holding its stored
//! spelling, bound and read as the enum itself, so rows carry `TipStatus`, not `String`.
//! A spelling the program does not know fails the row's decoding with the column's name and
//! the value, instead of travelling on as a string nobody matches.

use sqlx::any::{Any, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::domain::{
    AssignmentRole, BroadcastKind, BroadcastStatus, CapStatus, DeliveryState, Grant, OfficeKind, OfficerKind, Rating,
    Severity, TipSource, TipStatus, VillageKind,
};

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

    #[tokio::test]
    async fn a_status_is_bound_and_read_back_as_itself_and_an_unknown_spelling_is_an_error() {
        let opts = StoreOptions {
            url: "sqlite::memory:".into(),
            max_connections: 1,
            busy_timeout: std::time::Duration::from_secs(1),
        };
        let store = Store::connect(&opts).await.expect("store");
        let pool = store.pool();
        let back: TipStatus =
            sqlx::query_scalar("SELECT $1").bind(TipStatus::InProgress).fetch_one(pool).await.unwrap();
        assert_eq!(back, TipStatus::InProgress);
        let err = sqlx::query_scalar::<_, TipStatus>("SELECT 'pending'").fetch_one(pool).await.unwrap_err();
        assert!(format!("{err}").contains("\"pending\" is not a TipStatus"), "{err}");
    }
}
