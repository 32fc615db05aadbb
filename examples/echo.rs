//! The ceiling for the load benchmark (`benches/load.rs`): a bare teloxide 0.17 bot with the
//! stock `Dispatcher` and long polling that answers every text message with the same text, as
//! a reply. cunjing's throughput is stated as a ratio to this bot on the same machine and the
//! same fake Bot API. Reads `TELOXIDE_TOKEN` and `TELOXIDE_API_URL`.

use teloxide::prelude::*;
use teloxide::types::ReplyParameters;

#[tokio::main]
async fn main() {
    let bot = Bot::from_env();
    let handler = Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
        if let Some(text) = msg.text() {
            bot.send_message(msg.chat.id, text).reply_parameters(ReplyParameters::new(msg.id)).await?;
        }
        respond(())
    });
    Dispatcher::builder(bot, handler).build().dispatch().await;
}
