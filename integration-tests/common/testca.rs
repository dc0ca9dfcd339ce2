//! A test CA and server certificates for 127.0.0.1 / `localhost`, made with the `openssl` CLI
//! at test time (scripts/setup.sh installs it) as PEM files in a directory: the HTTPS API and
//! metrics listeners' certificates (secrets.rs) and the HTTPS webhook receiver's (webhook.rs).
//!
//! It makes files only; serving them is the caller's business.

use std::path::Path;
use std::process::Command;

use super::output;

/// Runs `openssl ARGS` in `dir` and fails the test, with its output, if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let (code, text) = output(Command::new("openssl").current_dir(dir).args(args));
    assert_eq!(code, 0, "openssl {args:?}:\n{text}");
}

/// A test CA in `dir` (`ca.pem`, `ca.key`).
pub fn make_ca(dir: &Path) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n\
         [dn]\nCN = imei-lockd test CA\n\
         [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-config",
            "ca.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
        ],
    );
}

/// A server certificate for 127.0.0.1 / localhost signed by the CA of `dir`, with subject
/// `CN=<cn>` and serial `serial` (hex): `<name>.pem`, `<name>.key`.
pub fn make_cert(dir: &Path, name: &str, cn: &str, serial: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &format!("0x{serial}"),
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            &pem,
        ],
    );
}
