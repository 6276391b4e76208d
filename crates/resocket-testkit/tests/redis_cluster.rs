//! `RedisCluster`: three masters sharing every slot, a key's shard as the cluster routes it, and
//! nothing left running once it is dropped.
#![cfg(unix)]

use std::net::TcpStream;

use resocket_testkit::RedisCluster;

#[test]
fn a_cluster_serves_each_key_on_the_shard_it_names_and_stops_when_dropped() {
    let cluster =
        RedisCluster::start().expect("redis-server and redis-cli (scripts/deps/redis.sh)");
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(cluster.url(), urls.join(","));
    let mut shards_seen = [false; 3];
    for key in ["a", "b", "c", "{tag}x", "{tag}y", "d", "e", "f", "g"] {
        let shard = cluster.shard_of(key).unwrap();
        shards_seen[shard] = true;
        assert_eq!(cluster.command(shard, &["SET", key, "1"]).unwrap(), "OK");
        for other in (0..3).filter(|s| *s != shard) {
            let refused = cluster.command(other, &["SET", key, "1"]).unwrap_err();
            assert!(refused.to_string().starts_with("MOVED"), "{refused}");
        }
    }
    assert_eq!(
        cluster.shard_of("{tag}x").unwrap(),
        cluster.shard_of("{tag}y").unwrap()
    );
    assert_eq!(shards_seen, [true; 3], "nine keys spread over every shard");
    let addrs: Vec<String> = urls
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_string())
        .collect();
    drop(cluster);
    for addr in addrs {
        assert!(TcpStream::connect(&addr).is_err(), "{addr} still listens");
    }
}
