//! `serve --demo`: a demo account with a few realistic subjects, and commands to try them.

use std::path::Path;

use anyhow::Context;
use datarequest::app::ingest::parse_line;
use datarequest::compose::Local;
use datarequest::domain::{AccountId, Line};
use serde_json::{Value, json};

/// A complete multipart message as a mailing platform sends it.
fn mime(id: &str, from: &str, to: &str, subject: &str, date: &str, text: &str) -> String {
    let html = format!(
        "<!doctype html><html><body><p>{}</p><p><a href=\"https://shop.example/u/{id}\">Unsubscribe</a></p></body></html>",
        text.replace('\n', "<br>")
    );
    format!(
        "Return-Path: <bounce-{id}@mail.shop.example>\r\n\
         From: {from}\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@mail.shop.example>\r\n\
         List-Unsubscribe: <https://shop.example/u/{id}>, <mailto:unsubscribe-{id}@mail.shop.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b-{id}\"\r\n\
         \r\n\
         --b-{id}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {text}\r\n\
         \r\n\
         Unsubscribe: https://shop.example/u/{id}\r\n\
         --b-{id}\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {html}\r\n\
         --b-{id}--\r\n"
    )
}

struct Send<'a> {
    id: &'a str,
    profile: Option<u64>,
    subprofile: Option<u64>,
    email: &'a str,
    mailing: &'a str,
    subject: &'a str,
    sent: &'a str,
    rfc2822: &'a str,
    text: &'a str,
}

/// The demo data, as the import format's lines.
fn lines(account: AccountId) -> Vec<Value> {
    let a = account.get();
    let mut lines = vec![
        json!({"kind":"profile","account":a,"id":1001,"database":1,"email":"jane.doe@example.com",
               "fields":{"firstname":"Jane","lastname":"Doe","city":"Utrecht","newsletter":"yes"},
               "interests":["news","offers"],"created":"2021-03-04 09:15:00","modified":"2025-06-01 12:00:00"}),
        json!({"kind":"subprofile","account":a,"id":5001,"profile":1001,"collection":1,"email":"jane@work.example",
               "fields":{"company":"Acme","role":"buyer"},"created":"2022-01-10 08:00:00","modified":"2022-01-10 08:00:00"}),
        json!({"kind":"subprofile","account":a,"id":5002,"profile":1001,"collection":2,"email":null,
               "fields":{"order":"2025-0117","total":"129.95"},"created":"2025-02-11 13:40:00","modified":"2025-02-11 13:40:00"}),
        json!({"kind":"profile","account":a,"id":1002,"database":1,"email":"pieter@example.nl",
               "fields":{"firstname":"Pieter","lastname":"de Vries","city":"Delft","newsletter":"no"},
               "interests":["offers"],"created":"2023-07-19 17:02:00","modified":"2025-09-30 08:45:00"}),
        json!({"kind":"subprofile","account":a,"id":5003,"profile":1002,"collection":1,"email":"p.devries@bedrijf.example",
               "fields":{"company":"Bedrijf BV","role":"owner"},"created":"2023-07-19 17:05:00","modified":"2023-07-19 17:05:00"}),
    ];
    let sends = [
        Send {
            id: "d-1001-1",
            profile: Some(1001),
            subprofile: None,
            email: "jane.doe@example.com",
            mailing: "466",
            subject: "Autumn offers",
            sent: "2025-10-01 07:00:00",
            rfc2822: "Wed, 01 Oct 2025 07:00:00 +0000",
            text: "Hello Jane,\nour autumn offers are here: 20% off everything.",
        },
        Send {
            id: "d-1001-2",
            profile: Some(1001),
            subprofile: None,
            email: "jane.doe@example.com",
            mailing: "471",
            subject: "Your November newsletter",
            sent: "2025-11-03 07:00:00",
            rfc2822: "Mon, 03 Nov 2025 07:00:00 +0000",
            text: "Hello Jane,\nthis month: new arrivals and a recipe.",
        },
        Send {
            id: "d-5001-1",
            profile: Some(1001),
            subprofile: Some(5001),
            email: "jane@work.example",
            mailing: "470",
            subject: "Your invoice",
            sent: "2025-10-05 10:00:00",
            rfc2822: "Sun, 05 Oct 2025 10:00:00 +0000",
            text: "Dear customer,\ninvoice 2025-0117 is ready in your account.",
        },
        Send {
            id: "d-1002-1",
            profile: Some(1002),
            subprofile: None,
            email: "pieter@example.nl",
            mailing: "466",
            subject: "Autumn offers",
            sent: "2025-10-01 07:00:02",
            rfc2822: "Wed, 01 Oct 2025 07:00:02 +0000",
            text: "Hallo Pieter,\nonze herfstaanbiedingen zijn er.",
        },
        Send {
            id: "tx-9001",
            profile: None,
            subprofile: None,
            email: "guest@example.org",
            mailing: "transactional",
            subject: "Your receipt",
            sent: "2025-11-01 16:45:00",
            rfc2822: "Sat, 01 Nov 2025 16:45:00 +0000",
            text: "Thank you for your order 9001.",
        },
    ];
    for s in &sends {
        let to = s.email;
        lines.push(
            json!({"kind":"message","account":a,"id":s.id,"profile":s.profile,"subprofile":s.subprofile,"email":to,
            "mailing":s.mailing,"subject":s.subject,"sent":s.sent,
            "mime": mime(s.id, "Shop <news@shop.example>", to, s.subject, s.rfc2822, s.text)}),
        );
    }
    let event = |kind: &str,
                 message: Option<&str>,
                 profile: Option<u64>,
                 subprofile: Option<u64>,
                 email: &str,
                 time: &str,
                 data: Value| {
        json!({"kind":"event","account":a,"type":kind,"message":message,"profile":profile,"subprofile":subprofile,"email":email,"time":time,"data":data})
    };
    lines.extend([
        event(
            "delivery",
            Some("d-1001-1"),
            Some(1001),
            None,
            "jane.doe@example.com",
            "2025-10-01 07:00:03",
            json!({"attempt":1,"smtp-response":"250 2.0.0 OK"}),
        ),
        event(
            "impression",
            Some("d-1001-1"),
            Some(1001),
            None,
            "jane.doe@example.com",
            "2025-10-01 08:12:40",
            json!({"ip":"198.51.100.23","useragent":"Mozilla/5.0 (iPhone)","device":"mobile"}),
        ),
        event(
            "click",
            Some("d-1001-1"),
            Some(1001),
            None,
            "jane.doe@example.com",
            "2025-10-01 08:13:02",
            json!({"link":"https://shop.example/autumn","ip":"198.51.100.23","useragent":"Mozilla/5.0 (iPhone)"}),
        ),
        event(
            "unsubscribe",
            Some("d-1001-2"),
            Some(1001),
            None,
            "jane.doe@example.com",
            "2025-11-03 19:30:00",
            json!({"source":"list-unsubscribe"}),
        ),
        event(
            "abuse",
            Some("d-1001-2"),
            Some(1001),
            None,
            "jane.doe@example.com",
            "2025-11-03 19:31:00",
            json!({"feedback_type":"abuse","recognized_as":"arf"}),
        ),
        event(
            "survey",
            None,
            Some(1001),
            None,
            "jane.doe@example.com",
            "2025-09-12 14:00:00",
            json!({"survey":"Customer satisfaction 2025","answers":{"rating":"4","comment":"Quick delivery"}}),
        ),
        event(
            "delivery",
            Some("d-5001-1"),
            Some(1001),
            Some(5001),
            "jane@work.example",
            "2025-10-05 10:00:01",
            json!({"attempt":1,"smtp-response":"250 2.0.0 OK"}),
        ),
        event(
            "error",
            Some("d-1002-1"),
            Some(1002),
            None,
            "pieter@example.nl",
            "2025-10-01 07:00:09",
            json!({"status":"550","errorcode":"5.1.1","description":"mailbox unavailable","errortype":"unreachable"}),
        ),
        event(
            "delivery",
            Some("tx-9001"),
            None,
            None,
            "guest@example.org",
            "2025-11-01 16:45:02",
            json!({"attempt":1,"smtp-response":"250 2.0.0 OK"}),
        ),
        event(
            "impression",
            Some("tx-9001"),
            None,
            None,
            "guest@example.org",
            "2025-11-01 17:02:11",
            json!({"ip":"203.0.113.9","useragent":"Thunderbird/128.0"}),
        ),
    ]);
    lines
}

/// Seeds the demo when the data dir is empty (or mints a new token for the demo account made
/// earlier) and prints how to try it.
pub async fn seed_and_print(local: &Local, data_dir: &Path) -> anyhow::Result<()> {
    let marker = data_dir.join("demo-account");
    let (account, token) = if local.store.is_empty().await? {
        let created = local.app.create_account().await?;
        let mut records = Vec::new();
        for line in lines(created.account) {
            match parse_line(&line.to_string()) {
                Ok(Some(record @ Line::Record(_))) => records.push(record),
                Ok(_) => anyhow::bail!("demo data: a line that is not a record"),
                Err(e) => anyhow::bail!("demo data: {e}"),
            }
        }
        local.app.ingest_lines(records).await?;
        std::fs::write(&marker, created.account.to_string()).context("writing the demo marker")?;
        (created.account, created.token)
    } else {
        let text = std::fs::read_to_string(&marker)
            .context("--demo: the data dir is not empty and holds no demo account; use an empty --data-dir")?;
        let account = AccountId::parse(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", marker.display()))?;
        let Some(token) = local.app.operator().add_token(account).await? else {
            anyhow::bail!("--demo: the demo account {account} no longer exists");
        };
        (account, token)
    };
    let url = local.app.settings().public_url.as_deref().unwrap_or_default();
    let outbox = data_dir.join("outbox");
    println!(
        "Demo account {account}: profiles 1001 and 1002, subprofiles 5001-5003, messages and events of every kind.\n\
         Access token (shown once): {token}\n\n\
         Try it (paste into a shell while this runs):\n\n\
         TOKEN={token}\n\
         ID=$(curl -s -X POST \"{url}/v3/profile/1001/datarequest?access_token=$TOKEN\" -H 'Content-Type: application/json' -d '{{\"report\":\"dpo@example.com\"}}' | tr -dc 0-9); echo \"request $ID\"\n\
         sleep 1; curl -s \"{url}/v3/datarequest/$ID/status?access_token=$TOKEN\"; echo\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" \"{url}/v3/datarequest/$ID/data\"; echo\n\
         ls {outbox}    # the delivery mail: $ID.eml\n\
         curl -si -X POST \"{url}/v3/email/guest%40example.org/datarequest?access_token=$TOKEN\" -H 'Content-Type: application/json' -d '[]'\n",
        token = token.expose(),
        outbox = outbox.display(),
    );
    Ok(())
}
