//! `clm contacts create|get|list|import`.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};

use clm_proto::contacts::v1 as pb;

use super::{connect_contacts, explain, show_time, table};
use crate::cli::ContactsCommand;
use crate::run::BoxError;

pub(crate) async fn contacts(command: ContactsCommand) -> Result<(), BoxError> {
    match command {
        ContactsCommand::Create {
            client,
            email,
            first_name,
            last_name,
            phone,
            company,
            job_title,
            country,
            city,
            source,
            campaign,
            attributes,
            email_opt_in,
        } => {
            let contact = pb::Contact {
                email,
                first_name,
                last_name,
                phone,
                company,
                job_title,
                country,
                city,
                source,
                campaign,
                attributes: attributes.into_iter().collect(),
                consent: Some(pb::Consent {
                    email_opt_in,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut api = connect_contacts(&client).await?;
            let created = api
                .create_contact(pb::CreateContactRequest {
                    contact: Some(contact),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            print_one(created.contact.unwrap_or_default());
        }
        ContactsCommand::Get { client, id } => {
            let mut api = connect_contacts(&client).await?;
            let found = api
                .get_contact(pb::GetContactRequest { id })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            print_one(found.contact.unwrap_or_default());
        }
        ContactsCommand::List {
            client,
            filter,
            order_by,
            page_size,
            all,
        } => {
            let mut api = connect_contacts(&client).await?;
            let mut rows = table::new(&["id", "email", "name", "company", "country", "created"]);
            let mut page_token = String::new();
            let mut count = 0usize;
            loop {
                let page = api
                    .list_contacts(pb::ListContactsRequest {
                        filter: filter.clone(),
                        order_by: order_by.clone(),
                        page_size,
                        page_token,
                    })
                    .await
                    .map_err(|s| explain(&s))?
                    .into_inner();
                count += page.contacts.len();
                for c in page.contacts {
                    rows.add_row(vec![
                        c.id,
                        c.email,
                        format!("{} {}", c.first_name, c.last_name)
                            .trim()
                            .to_owned(),
                        c.company,
                        c.country,
                        show_time(c.created_at.as_ref()),
                    ]);
                }
                page_token = page.next_page_token;
                if !all || page_token.is_empty() {
                    break;
                }
            }
            println!("{rows}");
            let more = if page_token.is_empty() {
                ""
            } else {
                " (more: use --all)"
            };
            println!("{count} contacts{more}");
        }
        ContactsCommand::Import {
            client,
            file,
            update_existing,
            batch_size,
        } => {
            import(
                client,
                &file,
                update_existing,
                batch_size.clamp(1, clm_contacts::MAX_BATCH),
            )
            .await?;
        }
    }
    Ok(())
}

fn print_one(c: pb::Contact) {
    let consent = c.consent.unwrap_or_default();
    let mut rows = table::new(&["field", "value"]);
    for (field, value) in [
        ("id", c.id),
        ("email", c.email),
        ("first_name", c.first_name),
        ("last_name", c.last_name),
        ("phone", c.phone),
        ("company", c.company),
        ("job_title", c.job_title),
        ("country", c.country),
        ("city", c.city),
        ("source", c.source),
        ("campaign", c.campaign),
        ("email_opt_in", consent.email_opt_in.to_string()),
        ("sms_opt_in", consent.sms_opt_in.to_string()),
        ("created_at", show_time(c.created_at.as_ref())),
        ("updated_at", show_time(c.updated_at.as_ref())),
        ("etag", c.etag),
    ] {
        rows.add_row(vec![field.to_owned(), value]);
    }
    for (key, value) in c.attributes {
        rows.add_row(vec![format!("attributes.{key}"), value]);
    }
    println!("{rows}");
}

/// Reads the CSV lazily and streams it in batches, so a file of any size is imported in
/// constant memory; the progress bar follows the bytes read.
async fn import(
    client: crate::cli::ClientArgs,
    file: &std::path::Path,
    update_existing: bool,
    batch_size: usize,
) -> Result<(), BoxError> {
    let size = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    let mut reader =
        csv::Reader::from_path(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let headers: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut api = connect_contacts(&client).await?;

    let progress = ProgressBar::new(size);
    progress.set_style(
        ProgressStyle::with_template("{spinner} importing [{bar:40}] {bytes}/{total_bytes} {msg}")?
            .progress_chars("=> "),
    );
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::ImportContactsRequest>(4);
    let bar = progress.clone();
    let producer = tokio::task::spawn_blocking(move || -> Result<u64, BoxError> {
        let mut rows = 0u64;
        let mut batch = Vec::with_capacity(batch_size);
        for record in reader.records() {
            let record = record?;
            batch.push(row_to_contact(&headers, &record));
            rows += 1;
            if batch.len() == batch_size {
                let message = pb::ImportContactsRequest {
                    contacts: std::mem::take(&mut batch),
                    update_existing,
                };
                if sender.blocking_send(message).is_err() {
                    return Ok(rows);
                }
                bar.set_position(record.position().map_or(0, csv::Position::byte));
                bar.set_message(format!("{rows} rows"));
            }
        }
        if !batch.is_empty() || rows == 0 {
            let _ = sender.blocking_send(pb::ImportContactsRequest {
                contacts: batch,
                update_existing,
            });
        }
        Ok(rows)
    });
    let reply = api
        .import_contacts(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    let rows = producer.await??;
    progress.finish_and_clear();
    let reply = reply.map_err(|s| explain(&s))?.into_inner();
    let mut summary = table::new(&["rows", "created", "updated", "rejected"]);
    summary.add_row(vec![rows, reply.created, reply.updated, reply.rejected]);
    println!("{summary}");
    if !reply.rejected_rows.is_empty() {
        let mut rejected = table::new(&["row", "reason"]);
        // Row numbers as a spreadsheet shows them: the header is row 1.
        for r in reply.rejected_rows.iter().take(50) {
            rejected.add_row(vec![(r.index + 2).to_string(), r.reason.clone()]);
        }
        println!("{rejected}");
        if reply.rejected_rows.len() > 50 {
            println!("... and {} more rejected rows", reply.rejected - 50);
        }
    }
    Ok(())
}

fn row_to_contact(headers: &[String], record: &csv::StringRecord) -> pb::Contact {
    let mut contact = pb::Contact::default();
    let mut attributes = HashMap::new();
    for (header, value) in headers.iter().zip(record.iter()) {
        let value = value.to_owned();
        match header.as_str() {
            "email" => contact.email = value,
            "first_name" => contact.first_name = value,
            "last_name" => contact.last_name = value,
            "phone" => contact.phone = value,
            "company" => contact.company = value,
            "job_title" => contact.job_title = value,
            "country" => contact.country = value,
            "city" => contact.city = value,
            "source" => contact.source = value,
            "campaign" => contact.campaign = value,
            _ if value.is_empty() => {}
            other => {
                attributes.insert(other.to_owned(), value);
            }
        }
    }
    contact.attributes = attributes;
    contact
}

/// The ids the server gave the contacts `filter` selects, by email.
pub(crate) async fn ids_by_email(
    contacts: &mut super::Contacts,
    filter: &str,
) -> Result<HashMap<String, String>, BoxError> {
    let mut ids = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = contacts
            .list_contacts(pb::ListContactsRequest {
                filter: filter.to_owned(),
                order_by: String::new(),
                page_size: 1_000,
                page_token,
            })
            .await
            .map_err(|s| explain(&s))?
            .into_inner();
        ids.extend(page.contacts.into_iter().map(|c| (c.email, c.id)));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        page_token = page.next_page_token;
    }
}
