//! Who may speak: the cluster secret, the client token, the handshake and the frame MACs.
//!
//! # The handshake
//!
//! Every peer link and every admin connection, and a client connection when the node has a client
//! token, starts with a mutual challenge-response before any other frame (the side that dials is
//! the *dialer*, the side that accepted the *listener*):
//!
//! 1. dialer -> listener: [`Frame::Hello`] with its role (a peer naming itself, an admin, or a
//!    client), its cluster name (empty: any) and a fresh 128-bit nonce;
//! 2. listener -> dialer: [`Frame::Challenge`] with the listener's node id, its own fresh nonce,
//!    and its proof: `HMAC-SHA256(key, "dynamo/1/proof/listener" 0 T)`, where `T` is the
//!    transcript (role, cluster, listener id, both nonces; [`Transcript`]);
//! 3. the dialer checks the proof (a peer link also checks that the listener is the node it
//!    meant to dial), and sends [`Frame::Proof`] with `HMAC-SHA256(key, "dynamo/1/proof/dialer" 0 T)`;
//! 4. the listener checks it. Each side then derives one key per direction from the same
//!    transcript, and every later frame carries a MAC ([`FrameMac`]): GMAC (AES-256-GCM with the
//!    frame as associated data) under the direction's key, with the frame's sequence number as
//!    the nonce, a tag of [`MAC_TAG_BYTES`].
//!    A frame altered, replayed, reordered or dropped fails the next check and closes the
//!    connection.
//!
//! `key` is the cluster secret for peers and admins, the client token for clients. Both nonces
//! are fresh, so neither a recorded handshake nor a reflected proof (the labels differ) passes,
//! and the per-direction keys are new for each connection. A node without a secret runs *open*:
//! the same handshake with an empty key, so that a peer's claimed name is still bound to its
//! connection (a frame "from n2" on n3's link is refused either way), but anyone who can reach
//! the node can speak as anyone; that is why an open node listens on loopback only (the CLI
//! refuses anything else).
//!
//! A shared secret makes every holder equal: a node (or an admin) that has it may claim any node
//! id. It keeps out strangers and damaged frames, not a compromised member.
//!
//! # Signed contexts
//!
//! A put's causal context says which versions its writer saw, and the put replaces exactly the
//! siblings it covers: a context taken on trust lets a client claim versions that do not exist
//! (a forged `n2=1000` covered n2's next writes of the key, so a later acknowledged put through n2
//! was dropped everywhere; 4,095 made-up actors filled the key's clock to its bound and locked
//! it). So a node with a cluster secret signs every context it hands to a client (a read's
//! merged context, and the context after a put's new version) with a [`ContextSigner`]: an
//! HMAC-SHA256 under a key derived from the secret with its own label, over the key and the
//! clock's canonical encoding, cut to [`CONTEXT_MAC_BYTES`]. It refuses a put whose non-empty
//! context carries no valid MAC; the empty context (a blind write) claims nothing and needs none.
//! Every node of the cluster derives the same key, so any node verifies what another signed, and
//! a forwarded put carries its MAC along. A node without a secret (open, loopback only) signs
//! nothing and checks nothing: there, a context is still taken on trust.
//!
//! The primitives are RustCrypto's `hmac` and `sha2` (proofs, keys) and `aes-gcm` (frames), with
//! their constant-time tag checks; nothing here is hand-rolled but the framing of their inputs.
//! Nonces come from the environment's randomness ([`crate::env::Env::random_u64`]): OS entropy
//! for a real node, the seeded RNG in the simulator, which so replays handshakes exactly.

use crate::ring::NodeId;
use crate::version::VClock;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::path::Path;

/// HMAC-SHA256.
type HmacSha256 = Hmac<Sha256>;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 16;
/// Bytes of a handshake proof (a whole HMAC-SHA256).
pub const PROOF_BYTES: usize = 32;
/// Bytes of the MAC that ends every authenticated frame (a GCM tag).
pub const MAC_TAG_BYTES: usize = 16;
/// Shortest secret or token accepted, in bytes: 128 bits at one bit per byte would be too few,
/// but an operator's generated secret (`head -c 32 /dev/urandom | base64`) is 44.
pub const SECRET_BYTES_MIN: usize = 16;
/// Longest secret or token file read, in bytes.
pub const SECRET_BYTES_MAX: usize = 4_096;
/// Longest cluster name, in bytes.
pub const CLUSTER_NAME_BYTES_MAX: usize = 64;
/// The cluster name when none is given.
pub const CLUSTER_NAME_DEFAULT: &str = "dynamo";

/// Bytes of a context's MAC ([`ContextSigner`]): 128 bits, like a frame's tag.
pub const CONTEXT_MAC_BYTES: usize = 16;

/// A context's MAC, as it crosses the wire beside the clock ([`crate::wire::Request::Put`]).
pub type ContextMac = [u8; CONTEXT_MAC_BYTES];

/// Why a node with a cluster secret refuses a put: its non-empty context carries no MAC this
/// cluster made for that key and clock (made up, altered, read from another key, or an old text
/// form without its `#MAC`).
pub const CONTEXT_NOT_SIGNED: &str =
    "the context was not issued by this cluster: pass back the context of a read";

/// The label that derives the context key from the cluster secret: no other use of the secret
/// (handshake proofs, frame keys) computes a MAC under it with this label, so a context's MAC is
/// never a proof or a key, nor the reverse.
const CONTEXT_KEY_LABEL: &str = "dynamo/1/key/context";
/// The label in front of every signed context.
const CONTEXT_MAC_LABEL: &str = "dynamo/1/context";

/// Signs and checks the contexts a node hands to clients (see "Signed contexts" above). Its
/// `Debug` does not show the key.
#[derive(Clone)]
pub struct ContextSigner {
    /// `HMAC-SHA256(cluster secret, CONTEXT_KEY_LABEL)`, keyed once into an HMAC state that each
    /// signature clones.
    mac: HmacSha256,
}

impl fmt::Debug for ContextSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContextSigner")
    }
}

impl ContextSigner {
    /// The signer of a cluster with this secret.
    pub fn new(secret: &Secret) -> ContextSigner {
        let mut derive = <HmacSha256 as Mac>::new_from_slice(secret.expose())
            .expect("HMAC takes a key of any length");
        derive.update(CONTEXT_KEY_LABEL.as_bytes());
        let key = derive.finalize().into_bytes();
        let mac = <HmacSha256 as Mac>::new_from_slice(&key).expect("HMAC takes a 32-byte key");
        ContextSigner { mac }
    }

    /// The signer of a node's configuration: none for an open node (no cluster secret).
    pub fn for_config(auth: &AuthConfig) -> Option<ContextSigner> {
        auth.cluster_secret.as_ref().map(ContextSigner::new)
    }

    fn prf(&self, key: &[u8], clock: &VClock) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT_MAC_LABEL.as_bytes());
        mac.update(&[0]);
        // The key goes in with its length (postcard's varint), so that no (key, clock) pair
        // encodes as another; a clock encodes canonically (sorted, unique, no zeros: decoding
        // normalises whatever a client sent).
        let encoded = postcard::to_stdvec(&(serde_bytes::Bytes::new(key), clock))
            .expect("a key and a clock encode");
        mac.update(&encoded);
        mac
    }

    /// The MAC of `clock` as the context of `key`.
    pub fn sign(&self, key: &[u8], clock: &VClock) -> ContextMac {
        let tag = self.prf(key, clock).finalize().into_bytes();
        let mut mac = [0u8; CONTEXT_MAC_BYTES];
        mac.copy_from_slice(&tag[..CONTEXT_MAC_BYTES]);
        mac
    }

    /// Whether `mac` is this cluster's MAC of `clock` as the context of `key` (compared in
    /// constant time).
    pub fn verify(&self, key: &[u8], clock: &VClock, mac: &ContextMac) -> bool {
        self.prf(key, clock).verify_truncated_left(mac).is_ok()
    }
}

/// A cluster secret or a client token. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// A secret from bytes, checked for length.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, String> {
        let bytes = bytes.into();
        if bytes.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "a secret of {} bytes is too short: at least {SECRET_BYTES_MIN}",
                bytes.len()
            ));
        }
        if bytes.len() > SECRET_BYTES_MAX {
            return Err(format!(
                "a secret of {} bytes is too long: at most {SECRET_BYTES_MAX}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// Reads a secret file: its bytes, less trailing line ends and spaces. The error names the
    /// file.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let named = |e: String| format!("secret file {}: {e}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| named(e.to_string()))?;
        if !meta.is_file() {
            return Err(named("not a file".into()));
        }
        if meta.len() > SECRET_BYTES_MAX as u64 + 2 {
            return Err(named(format!("larger than {SECRET_BYTES_MAX} bytes")));
        }
        let mut bytes = std::fs::read(path).map_err(|e| named(e.to_string()))?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        Secret::new(bytes).map_err(named)
    }

    /// The secret derived from a simulation's seed: the simulator runs the real handshake with a
    /// secret that replays with the seed.
    pub fn for_simulation(seed: u64) -> Secret {
        Secret(format!("dynamo-simulation-secret-{seed:016x}").into_bytes())
    }

    /// The secret's bytes (to key a MAC with).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// What a node checks connections with. Kept out of serialised configurations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// The secret peers and admins prove they hold; `None`: open (loopback only).
    pub cluster_secret: Option<Secret>,
    /// The token clients prove they hold; `None`: clients need none.
    pub client_token: Option<Secret>,
}

impl AuthConfig {
    /// The key a dialer of `role` must prove: the cluster secret for peers and admins, the client
    /// token for clients (empty when there is none: anyone passes).
    pub fn key_for(&self, role: &Role) -> &[u8] {
        let secret = match role {
            Role::Peer { .. } | Role::Admin => &self.cluster_secret,
            Role::Client => &self.client_token,
        };
        secret.as_ref().map(Secret::expose).unwrap_or(&[])
    }

    /// What a connection that sent no `Hello` may do: a client's requests, unless clients need a
    /// token (then nothing); and an admin's too on an open node (no cluster secret), as before
    /// there were secrets.
    pub fn anonymous_rights(&self) -> Option<Role> {
        match (&self.cluster_secret, &self.client_token) {
            (None, _) => Some(Role::Admin),
            (Some(_), None) => Some(Role::Client),
            (Some(_), Some(_)) => None,
        }
    }
}

/// Who a dialer says it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A node of the cluster, on its peer link (it may send `Peer` frames as `id` and pings).
    Peer { id: NodeId },
    /// An operator or a joining node: every request, membership and raw replica states included.
    Admin,
    /// A client: gets and puts.
    Client,
}

/// What both proofs and both frame keys are computed over: everything the two sides agreed on.
#[derive(Serialize)]
pub struct Transcript<'a> {
    /// The dialer's role (a peer's name included).
    pub role: &'a Role,
    /// The cluster name the dialer sent.
    pub cluster: &'a str,
    /// The listener's node id.
    pub listener: &'a NodeId,
    /// The dialer's nonce.
    pub dialer_nonce: &'a [u8; NONCE_BYTES],
    /// The listener's nonce.
    pub listener_nonce: &'a [u8; NONCE_BYTES],
}

impl Transcript<'_> {
    fn prf(&self, key: &[u8], label: &str) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        mac.update(&[0]);
        // A transcript has no maps and no floats: its encoding is one fixed sequence of bytes.
        let encoded = postcard::to_stdvec(self).expect("a transcript encodes");
        mac.update(&encoded);
        mac
    }

    fn bytes(&self, key: &[u8], label: &str) -> [u8; PROOF_BYTES] {
        self.prf(key, label).finalize().into_bytes().into()
    }

    /// The listener's proof that it holds `key`.
    pub fn listener_proof(&self, key: &[u8]) -> [u8; PROOF_BYTES] {
        self.bytes(key, LISTENER_PROOF)
    }

    /// The dialer's proof that it holds `key`.
    pub fn dialer_proof(&self, key: &[u8]) -> [u8; PROOF_BYTES] {
        self.bytes(key, DIALER_PROOF)
    }

    /// Whether `proof` is the listener's proof of `key` (compared in constant time).
    pub fn listener_proof_matches(&self, key: &[u8], proof: &[u8]) -> bool {
        self.prf(key, LISTENER_PROOF).verify_slice(proof).is_ok()
    }

    /// Whether `proof` is the dialer's proof of `key` (compared in constant time).
    pub fn dialer_proof_matches(&self, key: &[u8], proof: &[u8]) -> bool {
        self.prf(key, DIALER_PROOF).verify_slice(proof).is_ok()
    }

    /// The frame keys: (dialer to listener, listener to dialer).
    pub fn frame_keys(&self, key: &[u8]) -> ([u8; PROOF_BYTES], [u8; PROOF_BYTES]) {
        (
            self.bytes(key, "dynamo/1/key/dialer-to-listener"),
            self.bytes(key, "dynamo/1/key/listener-to-dialer"),
        )
    }
}

const LISTENER_PROOF: &str = "dynamo/1/proof/listener";
const DIALER_PROOF: &str = "dynamo/1/proof/dialer";

/// A fresh nonce from a source of random `u64`s.
pub fn nonce(mut random_u64: impl FnMut() -> u64) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    for chunk in nonce.chunks_mut(8) {
        chunk.copy_from_slice(&random_u64().to_le_bytes());
    }
    nonce
}

/// The MAC state of one direction of a connection: GMAC (AES-256-GCM over the frame as
/// associated data, with nothing encrypted; NIST SP 800-38D) under the direction's frame key,
/// with the frame's sequence number as the nonce. A key is used by one connection in one
/// direction only, so a nonce never repeats under it.
///
/// Why GMAC and not HMAC-SHA256 for frames: the simulator MACs every frame between its nodes, and
/// GMAC with hardware AES and carry-less multiplication costs a fraction of HMAC-SHA256 per byte
/// (BENCHMARKS.md, "Authentication's cost": the whole simulation took 10% more instructions
/// with GMAC, 95% more with HMAC-SHA256 on a CPU without SHA extensions). HMAC-SHA256 stays for
/// the handshake's proofs and the key derivation, where it runs once per connection.
#[derive(Clone)]
pub struct FrameMac {
    cipher: Aes256Gcm,
    seq: u64,
}

impl fmt::Debug for FrameMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameMac(seq {})", self.seq)
    }
}

impl FrameMac {
    /// The MAC of one direction, keyed with a frame key from [`Transcript::frame_keys`].
    pub fn new(key: &[u8; PROOF_BYTES]) -> FrameMac {
        FrameMac {
            cipher: Aes256Gcm::new(key.into()),
            seq: 0,
        }
    }

    fn nonce(&self) -> Nonce<aes_gcm::aead::consts::U12> {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.seq.to_be_bytes());
        nonce.into()
    }

    /// The tag of the next frame sent, `body`; counts the frame.
    pub fn tag(&mut self, body: &[u8]) -> [u8; MAC_TAG_BYTES] {
        let tag = self
            .cipher
            .encrypt_in_place_detached(&self.nonce(), body, &mut [])
            .expect("GCM takes associated data of any frame's size");
        self.seq += 1;
        tag.into()
    }

    /// Checks the tag of the next frame received (in constant time); counts the frame if it
    /// passes.
    pub fn verify(&mut self, body: &[u8], tag: &[u8]) -> bool {
        let ok = tag.len() == MAC_TAG_BYTES
            && self
                .cipher
                .decrypt_in_place_detached(&self.nonce(), body, &mut [], tag.into())
                .is_ok();
        if ok {
            self.seq += 1;
        }
        ok
    }
}

/// Checks a cluster name: 1 to [`CLUSTER_NAME_BYTES_MAX`] of `[A-Za-z0-9._-]`.
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= CLUSTER_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>(
        role: &'a Role,
        listener: &'a NodeId,
        a: &'a [u8; NONCE_BYTES],
        b: &'a [u8; NONCE_BYTES],
    ) -> Transcript<'a> {
        Transcript {
            role,
            cluster: "c",
            listener,
            dialer_nonce: a,
            listener_nonce: b,
        }
    }

    #[test]
    fn proofs_differ_by_side_key_and_transcript() {
        let role = Role::Peer { id: "n1".into() };
        let n2: NodeId = "n2".into();
        let (a, b) = ([1u8; NONCE_BYTES], [2u8; NONCE_BYTES]);
        let t = transcript(&role, &n2, &a, &b);
        assert_ne!(t.listener_proof(b"k"), t.dialer_proof(b"k"));
        assert_ne!(t.listener_proof(b"k"), t.listener_proof(b"other"));
        let c = [3u8; NONCE_BYTES];
        let fresh = transcript(&role, &n2, &a, &c);
        assert_ne!(t.listener_proof(b"k"), fresh.listener_proof(b"k"));
        let (d, l) = t.frame_keys(b"k");
        assert_ne!(d, l);
        assert!(t.dialer_proof_matches(b"k", &t.dialer_proof(b"k")));
        assert!(!t.dialer_proof_matches(b"k", &t.listener_proof(b"k")));
        assert!(!t.listener_proof_matches(b"other", &t.listener_proof(b"k")));
    }

    #[test]
    fn frame_macs_check_order_and_content() {
        let key = [9u8; PROOF_BYTES];
        let (mut send, mut recv) = (FrameMac::new(&key), FrameMac::new(&key));
        let t1 = send.tag(b"one");
        let t2 = send.tag(b"two");
        assert!(!recv.verify(b"two", &t2), "out of order");
        assert!(!recv.verify(b"one!", &t1), "altered");
        assert!(recv.verify(b"one", &t1));
        assert!(!recv.verify(b"one", &t1), "replayed");
        assert!(recv.verify(b"two", &t2));
    }

    /// A context's MAC depends on the secret, the key and the clock, and on nothing else: every
    /// node of a cluster makes the same one, so any verifies what another signed.
    #[test]
    fn context_macs_bind_secret_key_and_clock() {
        let secret = Secret::new(vec![b's'; 32]).unwrap();
        let (a, b) = (ContextSigner::new(&secret), ContextSigner::new(&secret));
        let clock = VClock::parse("n1.a=3,n2.b=1").unwrap();
        let mac = a.sign(b"k", &clock);
        assert_eq!(mac, b.sign(b"k", &clock));
        assert!(b.verify(b"k", &clock, &mac));
        assert!(!b.verify(b"k2", &clock, &mac), "another key");
        assert!(!b.verify(b"k", &VClock::parse("n1.a=3").unwrap(), &mac));
        let other = ContextSigner::new(&Secret::new(vec![b't'; 32]).unwrap());
        assert!(!other.verify(b"k", &clock, &mac), "another cluster");
        let mut flipped = mac;
        flipped[15] ^= 0x80;
        assert!(!a.verify(b"k", &clock, &flipped));
        // The key's length is part of what is signed: ("ab", clock) is not ("a", "b" + clock).
        assert_ne!(a.sign(b"ab", &VClock::new()), a.sign(b"a", &VClock::new()));
        assert_eq!(format!("{a:?}"), "ContextSigner", "the key is not shown");
    }

    #[test]
    fn secrets_are_checked_and_hidden() {
        assert!(Secret::new(b"short".to_vec()).is_err());
        let s = Secret::new(vec![b'x'; 32]).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(32 bytes)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(
            Secret::from_file(&path).unwrap().expose(),
            b"0123456789abcdef0123"
        );
        let missing = Secret::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("nope"), "{missing}");
    }
}
