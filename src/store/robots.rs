//! The WeCom group robots: the webhook address of a village's or an office's robot, which
//! broadcasts reach beside the groups ([`super::broadcasts`]).

use super::Store;

impl Store {
    pub async fn set_village_wecom(&self, code: &str, url: Option<&str>) -> anyhow::Result<bool> {
        let n = sqlx::query("UPDATE villages SET wecom_webhook = $2 WHERE code = $1")
            .bind(code)
            .bind(url)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    pub async fn set_office_wecom(&self, code: &str, url: Option<&str>) -> anyhow::Result<bool> {
        let n = sqlx::query("UPDATE offices SET wecom_webhook = $2 WHERE code = $1")
            .bind(code)
            .bind(url)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}
