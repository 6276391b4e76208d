//! Negotiation in both roles: offers, answers, and the invalid headers each role meets.

use super::*;

fn bits(n: u8) -> WindowBits {
    WindowBits::new(n).unwrap()
}

fn hv(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap()
}

fn client_accepts(
    cfg: &ClientDeflateConfig,
    response: &[&str],
) -> Result<Option<Negotiated>, NegotiationError> {
    let headers: Vec<_> = response.iter().map(|value| hv(value)).collect();
    accept_response(cfg, &headers)
}

fn server_answers(cfg: &ServerDeflateConfig, offers: &[&str]) -> Option<(Negotiated, String)> {
    let headers: Vec<_> = offers.iter().map(|value| hv(value)).collect();
    answer(cfg, &headers).map(|(n, value)| (n, value.to_str().unwrap().to_owned()))
}

fn negotiated(server_nct: bool, client_nct: bool, server: u8, client: u8) -> Negotiated {
    Negotiated {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: bits(server),
        client_max_window_bits: bits(client),
    }
}

#[test]
fn default_offer_matches_browsers_and_python_websockets() {
    let value = offer(&ClientDeflateConfig::default()).unwrap();
    assert_eq!(value, "permessage-deflate; client_max_window_bits");
}

#[test]
fn disabled_client_offers_nothing_and_rejects_an_answer() {
    let cfg = ClientDeflateConfig {
        enabled: false,
        ..ClientDeflateConfig::default()
    };
    assert_eq!(offer(&cfg), None);
    assert_eq!(client_accepts(&cfg, &[]), Ok(None));
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate"]),
        Err(NegotiationError::NotOffered("permessage-deflate".into()))
    );
}

#[test]
fn full_offer_lists_every_parameter() {
    let cfg = ClientDeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(bits(10)),
        client_max_window_bits: Some(bits(12)),
        ..ClientDeflateConfig::default()
    };
    assert_eq!(
        offer(&cfg).unwrap(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
}

#[test]
fn no_extension_header_means_no_compression() {
    let cfg = ClientDeflateConfig::default();
    assert_eq!(client_accepts(&cfg, &[]), Ok(None));
    assert_eq!(client_accepts(&cfg, &[""]), Ok(None));
}

#[test]
fn client_accepts_a_bare_answer_with_default_windows() {
    let cfg = ClientDeflateConfig::default();
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate"]),
        Ok(Some(Negotiated::default()))
    );
}

#[test]
fn client_honours_what_the_server_imposes() {
    let cfg = ClientDeflateConfig::default();
    assert_eq!(
        client_accepts(
            &cfg,
            &[
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
               server_max_window_bits=9; client_max_window_bits=8"
            ]
        ),
        Ok(Some(negotiated(true, true, 9, 8)))
    );
    // Quoted values and any letter case are the same parameters.
    assert_eq!(
        client_accepts(&cfg, &["Permessage-Deflate; Client_Max_Window_Bits=\"10\""]),
        Ok(Some(negotiated(false, false, 15, 10)))
    );
}

#[test]
fn client_rejects_an_extension_it_did_not_offer() {
    let cfg = ClientDeflateConfig::default();
    assert_eq!(
        client_accepts(&cfg, &["x-webkit-deflate-frame"]),
        Err(NegotiationError::NotOffered(
            "x-webkit-deflate-frame".into()
        ))
    );
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate", "permessage-deflate"]),
        Err(NegotiationError::DuplicateExtension)
    );
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate, permessage-deflate"]),
        Err(NegotiationError::DuplicateExtension)
    );
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate;"]),
        Err(NegotiationError::Malformed)
    );
}

#[test]
fn client_rejects_bad_parameters() {
    let cfg = ClientDeflateConfig::default();
    let cases: &[(&str, NegotiationError)] = &[
        (
            "permessage-deflate; mystery",
            NegotiationError::UnknownParameter("mystery".into()),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            NegotiationError::DuplicateParameter(SERVER_NO_CONTEXT_TAKEOVER),
        ),
        (
            "permessage-deflate; client_max_window_bits=10; client_max_window_bits=10",
            NegotiationError::DuplicateParameter(CLIENT_MAX_WINDOW_BITS),
        ),
        (
            "permessage-deflate; server_no_context_takeover=1",
            NegotiationError::InvalidValue {
                parameter: SERVER_NO_CONTEXT_TAKEOVER,
                value: "1".into(),
            },
        ),
        (
            "permessage-deflate; server_max_window_bits",
            NegotiationError::InvalidValue {
                parameter: SERVER_MAX_WINDOW_BITS,
                value: String::new(),
            },
        ),
        (
            // A response must give the client's window a value.
            "permessage-deflate; client_max_window_bits",
            NegotiationError::InvalidValue {
                parameter: CLIENT_MAX_WINDOW_BITS,
                value: String::new(),
            },
        ),
    ];
    for (response, error) in cases {
        assert_eq!(
            client_accepts(&cfg, &[response]),
            Err(error.clone()),
            "{response}"
        );
    }
    for value in ["7", "16", "08", "+9", "9.0", "", "1 5", "150"] {
        let response = format!("permessage-deflate; server_max_window_bits=\"{value}\"");
        assert_eq!(
            client_accepts(&cfg, &[&response]),
            Err(NegotiationError::InvalidValue {
                parameter: SERVER_MAX_WINDOW_BITS,
                value: value.into(),
            }),
            "{response}"
        );
    }
}

#[test]
fn every_window_size_from_8_to_15_parses() {
    for n in 8..=15 {
        assert_eq!(parse_window_bits(&n.to_string()), Some(bits(n)));
    }
    assert_eq!(WindowBits::new(7), None);
    assert_eq!(WindowBits::new(16), None);
}

#[test]
fn client_rejects_an_answer_that_ignores_its_offer() {
    let cfg = ClientDeflateConfig {
        server_no_context_takeover: true,
        ..ClientDeflateConfig::default()
    };
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate"]),
        Err(NegotiationError::MissingParameter(
            SERVER_NO_CONTEXT_TAKEOVER
        ))
    );

    let cfg = ClientDeflateConfig {
        server_max_window_bits: Some(bits(10)),
        client_max_window_bits: Some(bits(11)),
        ..ClientDeflateConfig::default()
    };
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate"]),
        Err(NegotiationError::MissingParameter(SERVER_MAX_WINDOW_BITS))
    );
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate; server_max_window_bits=11"]),
        Err(NegotiationError::WindowTooLarge {
            parameter: SERVER_MAX_WINDOW_BITS,
            offered: bits(10),
            answered: bits(11),
        })
    );
    assert_eq!(
        client_accepts(
            &cfg,
            &["permessage-deflate; server_max_window_bits=10; client_max_window_bits=12"]
        ),
        Err(NegotiationError::WindowTooLarge {
            parameter: CLIENT_MAX_WINDOW_BITS,
            offered: bits(11),
            answered: bits(12),
        })
    );
    // A smaller window than offered is the server's right; an absent client window
    // keeps what the client offered.
    assert_eq!(
        client_accepts(&cfg, &["permessage-deflate; server_max_window_bits=9"]),
        Ok(Some(negotiated(false, false, 9, 11)))
    );
}

#[test]
fn server_accepts_the_default_offer_on_the_clients_terms() {
    let cfg = ServerDeflateConfig::default();
    let offer = offer(&ClientDeflateConfig::default()).unwrap();
    let (negotiated, value) = answer(&cfg, [&offer]).unwrap();
    assert_eq!(negotiated, Negotiated::default());
    assert_eq!(value, "permessage-deflate");
    // And the client takes that answer as the same agreement.
    assert_eq!(
        accept_response(&ClientDeflateConfig::default(), [&value]),
        Ok(Some(negotiated))
    );
}

#[test]
fn server_without_compression_answers_nothing() {
    let cfg = ServerDeflateConfig {
        enabled: false,
        ..ServerDeflateConfig::default()
    };
    assert_eq!(server_answers(&cfg, &["permessage-deflate"]), None);
    assert_eq!(server_answers(&ServerDeflateConfig::default(), &[]), None);
}

#[test]
fn server_echoes_what_the_client_asks() {
    let cfg = ServerDeflateConfig::default();
    assert_eq!(
        server_answers(
            &cfg,
            &[
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
               server_max_window_bits=10; client_max_window_bits=12"
            ]
        ),
        Some((
            negotiated(true, true, 10, 12),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
                .into()
        ))
    );
}

#[test]
fn server_imposes_its_own_limits() {
    let cfg = ServerDeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(bits(11)),
        client_max_window_bits: Some(bits(9)),
        ..ServerDeflateConfig::default()
    };
    assert_eq!(
        server_answers(&cfg, &["permessage-deflate; client_max_window_bits"]),
        Some((
            negotiated(true, true, 11, 9),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=11; client_max_window_bits=9"
                .into()
        ))
    );
    // The smaller of two limits wins, whoever set it.
    assert_eq!(
        server_answers(
            &cfg,
            &["permessage-deflate; server_max_window_bits=8; client_max_window_bits=12"]
        )
        .unwrap()
        .0,
        negotiated(true, true, 8, 9)
    );
    // A client that did not offer client_max_window_bits cannot be limited.
    let (negotiated_, value) = server_answers(&cfg, &["permessage-deflate"]).unwrap();
    assert_eq!(negotiated_, negotiated(true, true, 11, 15));
    assert!(!value.contains(CLIENT_MAX_WINDOW_BITS), "{value}");
}

#[test]
fn server_skips_invalid_offers_and_takes_the_first_valid_one() {
    let cfg = ServerDeflateConfig::default();
    let offers = [
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; unknown_param, permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; server_max_window_bits",
        "bad token here, permessage-deflate; server_max_window_bits=12",
        "permessage-deflate",
    ];
    assert_eq!(
        server_answers(&cfg, &offers),
        Some((
            negotiated(false, false, 12, 15),
            "permessage-deflate; server_max_window_bits=12".into()
        ))
    );
    // Offers in one header are taken in order, before those of the next header.
    assert_eq!(
        server_answers(
            &cfg,
            &[
                "permessage-deflate; client_no_context_takeover, permessage-deflate",
                "permessage-deflate; server_no_context_takeover",
            ]
        )
        .unwrap()
        .0,
        negotiated(false, true, 15, 15)
    );
}

#[test]
fn server_refuses_when_every_offer_is_invalid() {
    let cfg = ServerDeflateConfig::default();
    for offers in [
        &["permessage-deflate; server_max_window_bits=7"][..],
        &["permessage-deflate; client_max_window_bits=016"],
        &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
        &["x-other; a=1", "permessage-deflate; a"],
        &["permessage-deflate; client_max_window_bits=\"1"],
    ] {
        assert_eq!(server_answers(&cfg, offers), None, "{offers:?}");
    }
}

#[test]
fn server_answers_are_accepted_by_the_client_that_offered() {
    let clients = [
        ClientDeflateConfig::default(),
        ClientDeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(bits(8)),
            client_max_window_bits: Some(bits(8)),
            ..ClientDeflateConfig::default()
        },
        ClientDeflateConfig {
            server_max_window_bits: Some(bits(13)),
            client_max_window_bits: Some(bits(14)),
            ..ClientDeflateConfig::default()
        },
    ];
    let servers = [
        ServerDeflateConfig::default(),
        ServerDeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(bits(10)),
            client_max_window_bits: Some(bits(12)),
            ..ServerDeflateConfig::default()
        },
    ];
    for client in &clients {
        for server in &servers {
            let offer = offer(client).unwrap();
            let (on_server, value) = answer(server, [&offer]).unwrap();
            let on_client = accept_response(client, [&value]);
            assert_eq!(on_client, Ok(Some(on_server)), "{client:?} {server:?}");
        }
    }
}

#[test]
fn a_fixed_server_window_skips_offers_that_ask_for_less() {
    let cfg = ServerDeflateConfig {
        server_no_context_takeover: true,
        fixed_server_window: true,
        ..ServerDeflateConfig::default()
    };
    assert_eq!(
        server_answers(&cfg, &["permessage-deflate; server_max_window_bits=10"]),
        None
    );
    // The next offer that allows the window is taken.
    assert_eq!(
        server_answers(
            &cfg,
            &["permessage-deflate; server_max_window_bits=10, permessage-deflate"]
        ),
        Some((
            negotiated(true, false, 15, 15),
            "permessage-deflate; server_no_context_takeover".into()
        ))
    );
    assert_eq!(
        server_answers(&cfg, &["permessage-deflate; server_max_window_bits=15"])
            .unwrap()
            .0,
        negotiated(true, false, 15, 15)
    );
}
