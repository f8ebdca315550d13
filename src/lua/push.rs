//! A host's push [`Endpoint`] as Lua userdata, with the clocks read here.

use std::time::Instant;

use mlua::{LuaString, UserData, UserDataMethods, Value};

use super::stanza::element_to_lua;
use crate::clock::unix_secs;
use crate::push::{Credentials, Endpoint};

/// The client's address, then the Authorization, webhook-id,
/// webhook-timestamp and webhook-signature headers, and the body.
type Push = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    LuaString,
);

impl UserData for Endpoint {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // nil when the push may go on; else the HTTP status, why, and the
        // seconds for Retry-After (or nil).
        methods.add_method_mut(
            "admit",
            |_, this, (address, authorization, id, timestamp, signature, body): Push| {
                let credentials = Credentials {
                    authorization: authorization.as_deref(),
                    webhook_id: id.as_deref(),
                    webhook_timestamp: timestamp.as_deref(),
                    webhook_signature: signature.as_deref(),
                };
                let unix = unix_secs();
                let body = body.as_bytes();
                Ok(
                    match this.admit(&address, &credentials, &body, Instant::now(), unix) {
                        Ok(()) => (None, None, None),
                        Err(e) => (Some(e.status), Some(e.message), e.retry_after),
                    },
                )
            },
        );
        // The stanza a push describes and whether the push waits for its
        // answer (an IQ get or set); or nil, the HTTP status and why.
        methods.add_method_mut(
            "stanza",
            |lua, this, (content_type, body): (Option<String>, LuaString)| {
                Ok(
                    match this.stanza(content_type.as_deref(), &body.as_bytes()) {
                        Ok((stanza, waits)) => (
                            Value::Table(element_to_lua(lua, &stanza)?),
                            Value::Boolean(waits),
                            Value::Nil,
                        ),
                        Err(e) => (
                            Value::Nil,
                            Value::Integer(e.status.into()),
                            Value::String(lua.create_string(&e.message)?),
                        ),
                    },
                )
            },
        );
        // A pushed IQ handed over by a reload: its answer is awaited here.
        methods.add_method_mut("expect", |_, this, (id, to): (String, String)| {
            Ok(this.iqs.expect(&id, &to))
        });
        // A pushed IQ no longer waits (timed out).
        methods.add_method_mut("forget", |_, this, id: String| {
            this.iqs.forget(&id);
            Ok(())
        });
        // Seconds a pushed IQ waits for its answer.
        methods.add_method("timeout", |_, this, ()| Ok(this.timeout().as_secs_f64()));
    }
}
