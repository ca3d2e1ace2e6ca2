//! The audit trail keeps who entered a salon as YClients' user id alone. Before, each entry's
//! `registration_started` row kept the signed user's summary — name, phone, e-mail, the salon's
//! name as YClients gave it — and the trail outlives uninstalls. This rewrites the rows stored so
//! far as the code now writes them: `{"user": {...}, …}` becomes `{"user_id": "…", …}` (the id as
//! text, as `salons.connected_by` keeps it; `null` without one), every other field unchanged.
//! There is no way back: `down` leaves the rows as they are.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IntegrationEvents {
    Table,
    Id,
    Kind,
    Payload,
}

/// Rows read and rewritten at a time.
const PAGE: u64 = 500;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let mut after = 0i32;
        loop {
            let page = Query::select()
                .columns([IntegrationEvents::Id, IntegrationEvents::Payload])
                .from(IntegrationEvents::Table)
                .and_where(Expr::col(IntegrationEvents::Kind).eq("registration_started"))
                .and_where(Expr::col(IntegrationEvents::Id).gt(after))
                .order_by(IntegrationEvents::Id, Order::Asc)
                .limit(PAGE)
                .to_owned();
            let rows = db.query_all(&page).await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.try_get("", "id")?;
            for row in &rows {
                let id: i32 = row.try_get("", "id")?;
                let payload: String = row.try_get("", "payload")?;
                let Some(rewritten) = without_user_details(&payload) else {
                    continue;
                };
                let update = Query::update()
                    .table(IntegrationEvents::Table)
                    .value(IntegrationEvents::Payload, rewritten)
                    .and_where(Expr::col(IntegrationEvents::Id).eq(id))
                    .to_owned();
                db.execute(&update).await?;
            }
        }
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The details are gone; the rows stay as they are.
        Ok(())
    }
}

/// The payload with its `user` object replaced by `user_id`; `None` when there is nothing to
/// rewrite (no `user` field, or not a JSON object at all).
fn without_user_details(payload: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let object = value.as_object_mut()?;
    let user = object.remove("user")?;
    let id = match user.get("user_id").or_else(|| user.get("id")) {
        Some(serde_json::Value::Number(n)) => serde_json::Value::String(n.to_string()),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            serde_json::Value::String(s.trim().chars().take(64).collect())
        }
        _ => serde_json::Value::Null,
    };
    object.insert("user_id".to_owned(), id);
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::without_user_details;

    #[test]
    fn an_entrys_user_becomes_its_id_and_nothing_else_changes() {
        let before = r#"{"user":{"user_id":100500,"name":"Андрей Иванов","email":"a@example.com","phone":"79990009900","is_approved":true,"salon_name":"Орхидея"},"status":"new","installation":"pending"}"#;
        let after: serde_json::Value =
            serde_json::from_str(&without_user_details(before).expect("rewritten")).expect("JSON");
        assert_eq!(
            after,
            serde_json::json!({"user_id": "100500", "status": "new", "installation": "pending"})
        );
        let named_by_text = r#"{"user":{"user_id":" 77 "},"status":"active"}"#;
        assert!(without_user_details(named_by_text)
            .expect("rewritten")
            .contains(r#""user_id":"77""#));
        let nameless = r#"{"user":null,"status":"new","installation":"active"}"#;
        assert!(without_user_details(nameless)
            .expect("rewritten")
            .contains(r#""user_id":null"#));
    }

    #[test]
    fn rows_already_in_the_new_shape_or_not_json_are_left_alone() {
        assert_eq!(
            without_user_details(r#"{"user_id":"1","status":"new"}"#),
            None
        );
        assert_eq!(without_user_details("not json"), None);
        assert_eq!(without_user_details("[1,2]"), None);
    }
}
