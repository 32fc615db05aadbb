//! WeCom (企业微信) group robots: the WeChat side of broadcasts. A village or office may carry
//! a robot's webhook URL; broadcasts to it are posted there as markdown, at most
//! `messages_per_min_per_robot` a minute per robot, and every failure lands in the ledger.
//!
//! WeCom answers HTTP 200 with `{"errcode": 0, "errmsg": "ok"}`; `45009` is its rate limit
//! (retried after a minute), `93000` an invalid or deleted robot (the target is lost).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::core::broadcast::{Deliverer, Delivery, SendOutcome};

pub struct WecomDeliverer {
    http: reqwest::Client,
    per_robot: DefaultKeyedRateLimiter<String>,
}

#[derive(Deserialize)]
struct Answer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// The robot's key is a secret (it lets anyone post): logs and the ledger show the host only.
fn robot_label(url: &str) -> String {
    url::Url::parse(url).map(|u| format!("{}{}", u.host_str().unwrap_or("?"), u.path())).unwrap_or_else(|_| "?".into())
}

impl WecomDeliverer {
    pub fn new(per_minute: u32, timeout: Duration) -> anyhow::Result<WecomDeliverer> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Ok(WecomDeliverer { http, per_robot: RateLimiter::keyed(quota) })
    }
}

impl Deliverer for WecomDeliverer {
    fn channel(&self) -> &'static str {
        "wecom"
    }

    fn reports(&self) -> bool {
        false
    }

    async fn send(&self, d: Delivery) -> SendOutcome {
        let Some(url) = d.address else { return SendOutcome::Failed("no webhook URL".into()) };
        if self.per_robot.check_key(&url).is_err() {
            return SendOutcome::Retry {
                after: Duration::from_secs(60 / 20),
                detail: "robot's per-minute limit reached".into(),
            };
        }
        let body = serde_json::json!({ "msgtype": "markdown", "markdown": { "content": d.text } });
        let response = match self.http.post(&url).json(&body).send().await {
            Ok(r) => r,
            // reqwest's error names the URL, and the URL holds the robot's key: drop it.
            Err(e) => {
                return SendOutcome::Retry {
                    after: Duration::from_secs(5),
                    detail: format!("{}: {}", robot_label(&url), e.without_url()),
                };
            }
        };
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return SendOutcome::Retry { after: Duration::from_secs(5), detail: format!("HTTP {status}") };
        }
        if !status.is_success() {
            return SendOutcome::Failed(format!("HTTP {status}"));
        }
        match response.json::<Answer>().await {
            Ok(a) if a.errcode == 0 => {
                SendOutcome::Sent { message_id: None, pinned: false, note: None, migrated_to: None }
            }
            Ok(a) if a.errcode == 45009 => {
                SendOutcome::Retry { after: Duration::from_secs(60), detail: format!("45009 {}", a.errmsg) }
            }
            Ok(a) if a.errcode == 93000 => SendOutcome::Lost(format!("93000 {}", a.errmsg)),
            Ok(a) => SendOutcome::Failed(format!("{} {}", a.errcode, a.errmsg)),
            Err(e) => SendOutcome::Retry {
                after: Duration::from_secs(5),
                detail: format!("unreadable answer: {}", e.without_url()),
            },
        }
    }

    async fn delete(&self, _chat_id: i64, _message_id: i64) -> bool {
        false // robots cannot take a message back; a correction is posted instead
    }
}
