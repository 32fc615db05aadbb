//! Micro-benchmarks of triage: normalising one message and classifying it through every
//! rule (one `RegexSet` pass). Run with `cargo bench --bench triage`; the figures are in
//! BENCHMARKS.md.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use cunjing::triage::{Triage, normalise};

/// Messages of the kinds a village group sees, short and long.
const MESSAGES: [(&str, &str); 6] = [
    ("chatter", "大家早上好，今天赶集的人多不多"),
    ("contact", "我们村民警电话多少"),
    ("emergency", "有人在村口打架了，快来人啊！！"),
    ("tip", "俺家电动车昨晚在院里被偷了，咋整"),
    ("traditional", "請問我們村的民警電話是多少"),
    (
        "long_notice",
        "【警方提示】近期电信网络诈骗高发，不法分子冒充公检法、客服、领导等身份，以涉嫌洗钱、退款理赔、刷单返利为由，诱骗群众转账汇款。请大家牢记：凡是要求转账到安全账户的都是诈骗！如有疑问请拨打110或96110咨询。",
    ),
];

fn triage(c: &mut Criterion) {
    let rules = Triage::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/intents.toml")).unwrap();
    let mut group = c.benchmark_group("classify");
    for (name, text) in MESSAGES {
        group.bench_function(name, |b| b.iter(|| rules.classify(black_box(text))));
    }
    group.finish();
    let mut group = c.benchmark_group("normalise");
    for (name, text) in [MESSAGES[2], MESSAGES[4], MESSAGES[5]] {
        group.bench_function(name, |b| b.iter(|| normalise(black_box(text))));
    }
    group.finish();
}

criterion_group!(benches, triage);
criterion_main!(benches);
