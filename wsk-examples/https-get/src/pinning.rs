//! The server's authentication: its certificate pinned by the SHA-256 of its DER encoding,
//! and the proof that the server holds that certificate's private key (the handshake's
//! `CertificateVerify` signature, ECDSA P-256 with SHA-256).
//!
//! A pin names one certificate; its validity period, names and issuer are not looked at (the
//! pin replaces them). Matching the fingerprint alone proves nothing — a certificate is
//! public — so the connection is accepted only when [`PinnedCertificate::proven`] says the
//! `CertificateVerify` signature over the handshake was checked against the pinned
//! certificate's key. `embedded-tls` calls the verifier when those messages come but does not
//! require them, so the caller checks `proven` after the handshake.

use alloc::vec::Vec;

use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme,
    TlsError, TlsVerifier,
};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

/// The length of a SHA-256 fingerprint.
pub const FINGERPRINT_LEN: usize = 32;

/// Why a fingerprint parameter is not one.
pub const FINGERPRINT_FORMAT: &str =
    "not 64 hexadecimal digits (a SHA-256 fingerprint; colons between bytes are allowed)";

/// Parses a SHA-256 fingerprint: 64 hexadecimal digits, optionally with `:` between bytes
/// (as `openssl x509 -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Result<[u8; FINGERPRINT_LEN], &'static str> {
    let mut digits = text.bytes().filter(|&b| b != b':');
    let mut fingerprint = [0u8; FINGERPRINT_LEN];
    for byte in &mut fingerprint {
        let (Some(high), Some(low)) = (digits.next(), digits.next()) else {
            return Err(FINGERPRINT_FORMAT);
        };
        let value = |digit: u8| (digit as char).to_digit(16).ok_or(FINGERPRINT_FORMAT);
        *byte = (value(high)? * 16 + value(low)?) as u8;
    }
    if digits.next().is_some() {
        return Err(FINGERPRINT_FORMAT);
    }
    Ok(fingerprint)
}

/// The verifier of a server pinned by its certificate's fingerprint.
pub struct PinnedCertificate {
    pin: [u8; FINGERPRINT_LEN],
    /// The fingerprint of the last certificate the server presented.
    presented: Option<[u8; FINGERPRINT_LEN]>,
    /// The pinned certificate's key, once the server presented that certificate.
    key: Option<VerifyingKey>,
    /// The handshake's transcript up to the certificate, which `CertificateVerify` signs.
    transcript: Option<Sha256>,
    /// Whether the signature was checked with the pinned certificate's key.
    proven: bool,
}

impl PinnedCertificate {
    /// A verifier that accepts the certificate whose DER encoding hashes to `pin`.
    pub fn new(pin: [u8; FINGERPRINT_LEN]) -> PinnedCertificate {
        PinnedCertificate {
            pin,
            presented: None,
            key: None,
            transcript: None,
            proven: false,
        }
    }

    /// Whether the server presented the pinned certificate and proved it holds its key.
    pub fn proven(&self) -> bool {
        self.proven
    }

    /// The fingerprint of the certificate the server presented, if it presented one.
    pub fn presented(&self) -> Option<&[u8; FINGERPRINT_LEN]> {
        self.presented.as_ref()
    }
}

/// Compares without an early exit (the pin is not secret, but this costs nothing).
fn same(a: &[u8; FINGERPRINT_LEN], b: &[u8; FINGERPRINT_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The ECDSA P-256 key of a certificate (DER).
fn p256_key(certificate: &[u8]) -> Result<VerifyingKey, TlsError> {
    let certificate =
        x509_cert::Certificate::from_der(certificate).map_err(|_| TlsError::DecodeError)?;
    let info = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| TlsError::DecodeError)?;
    // Refuses a key of another algorithm or curve.
    VerifyingKey::from_public_key_der(&info).map_err(|_| TlsError::InvalidCertificate)
}

impl TlsVerifier<Aes128GcmSha256> for PinnedCertificate {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The pin names the certificate: its names are not looked at.
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &Sha256,
        certificate: CertificateRef,
    ) -> Result<(), TlsError> {
        self.key = None;
        self.transcript = None;
        self.proven = false;
        // The server's own certificate comes first; the rest of the chain is not needed.
        let Some(CertificateEntryRef::X509(der)) = certificate.entries.first() else {
            return Err(TlsError::InvalidCertificate);
        };
        let presented: [u8; FINGERPRINT_LEN] = Sha256::digest(der).into();
        self.presented = Some(presented);
        if !same(&presented, &self.pin) {
            return Err(TlsError::InvalidCertificate);
        }
        self.key = Some(p256_key(der)?);
        self.transcript = Some(transcript.clone());
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        // Only after the pinned certificate, once.
        let (Some(key), Some(transcript)) = (self.key.take(), self.transcript.take()) else {
            return Err(TlsError::InvalidSignature);
        };
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(TlsError::InvalidSignatureScheme);
        }
        // RFC 8446, 4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
        let mut signed: Vec<u8> = Vec::new();
        signed
            .try_reserve(64 + 34 + 32)
            .map_err(|_| TlsError::OutOfMemory)?;
        signed.extend_from_slice(&[0x20; 64]);
        signed.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
        signed.extend_from_slice(&transcript.finalize());
        let signature = Signature::from_der(verify.signature).map_err(|_| TlsError::DecodeError)?;
        key.verify(&signed, &signature)
            .map_err(|_| TlsError::InvalidSignature)?;
        self.proven = true;
        Ok(())
    }
}
