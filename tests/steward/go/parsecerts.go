// Command parsecerts checks Donjon Steward certificates with Go's crypto/x509,
// a strict X.509 parser (it refuses, among much else, OBJECT IDENTIFIER arcs
// of 2^31 and above, and unhandled critical extensions).
//
// Usage:
//
//	parsecerts [-at RFC3339] CA.pem LEAF.pem...
//
// Each file holds exactly one PEM "CERTIFICATE" block. The first is the
// Steward's CA certificate; every other one must be an X.509-SVID that the CA
// issued (DESIGN.md "Certificates the Steward issues"; SPIFFE X509-SVID
// sections 4 and 5).
//
// A leaf's TCG DICE MultiTcbInfo extension (2.23.133.5.4.5, TCG DICE Attestation
// Architecture 1.1 section 6.1.2), when present, must be non-critical and parse
// as a DiceTcbInfoSeq with encoding/asn1; its entries are reported.
//
// One JSON line per file goes to stdout: the certificate's facts, or
// {"file": ..., "error": ...}. Exit codes (Donjon's CLI convention): 0 every
// certificate passed, 1 at least one was refused, 2 usage, 3 a file could not
// be read. Only the standard library is used, so it builds offline.
package main

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"time"
)

// maxFile bounds what is read from one file: an SVID is a few hundred bytes.
const maxFile = 1 << 20

const (
	oidSAN           = "2.5.29.17"
	oidKeyUsage      = "2.5.29.15"
	oidMultiTcbInfo  = "2.23.133.5.4.5"
	maxDiceEntries   = 16
	maxDiceExtension = 8192
)

// fwid is TCG DICE "FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }".
type fwid struct {
	HashAlg asn1.ObjectIdentifier
	Digest  []byte
}

// diceTcbInfo is TCG DICE "DiceTcbInfo": every field optional, IMPLICIT context tags [0]..[9].
type diceTcbInfo struct {
	Vendor     string         `asn1:"optional,tag:0,utf8"`
	Model      string         `asn1:"optional,tag:1,utf8"`
	Version    string         `asn1:"optional,tag:2,utf8"`
	SVN        *big.Int       `asn1:"optional,tag:3"`
	Layer      *big.Int       `asn1:"optional,tag:4"`
	Index      *big.Int       `asn1:"optional,tag:5"`
	FWIDs      []fwid         `asn1:"optional,tag:6"`
	Flags      asn1.BitString `asn1:"optional,tag:7"`
	VendorInfo []byte         `asn1:"optional,tag:8"`
	Type       []byte         `asn1:"optional,tag:9"`
}

type diceEntry struct {
	Vendor    string   `json:"vendor"`
	Model     string   `json:"model"`
	Version   string   `json:"version,omitempty"`
	SVN       string   `json:"svn,omitempty"`
	Layer     string   `json:"layer,omitempty"`
	FWIDs     []string `json:"fwids"` // "<hash OID>:<hex digest>"
	NotSecure bool     `json:"not_secure"`
}

// emptyName is DER SEQUENCE {}: an empty RDNSequence (RFC 5280 4.1.2.6).
var emptyName = []byte{0x30, 0x00}

type report struct {
	File          string      `json:"file"`
	Role          string      `json:"role"`
	Subject       string      `json:"subject"`
	SpiffeID      string      `json:"spiffe_id,omitempty"`
	DNSNames      []string    `json:"dns_names"`
	IPAddresses   []string    `json:"ip_addresses"`
	Dice          []diceEntry `json:"dice,omitempty"`
	Serial        string      `json:"serial"`
	NotBefore     string      `json:"not_before"`
	NotAfter      string      `json:"not_after"`
	ExtensionOIDs []string    `json:"extension_oids"`
	KeyAlgorithm  string      `json:"key_algorithm"`
	SigAlgorithm  string      `json:"signature_algorithm"`
}

type failure struct {
	File  string `json:"file"`
	Role  string `json:"role"`
	Error string `json:"error"`
}

type unreadable struct{ err error }

func (u unreadable) Error() string { return u.err.Error() }

// load reads one file and parses its single CERTIFICATE block.
func load(path string) (*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unreadable{err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, unreadable{err}
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("file larger than %d bytes", maxFile)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the first PEM block (one certificate per file)")
	}
	return x509.ParseCertificate(block.Bytes)
}

func extension(cert *x509.Certificate, oid string) (critical bool, found bool) {
	for _, ext := range cert.Extensions {
		if ext.Id.String() == oid {
			return ext.Critical, true
		}
	}
	return false, false
}

// parseDice decodes a MultiTcbInfo extension value: a non-empty SEQUENCE OF DiceTcbInfo.
func parseDice(value []byte) ([]diceEntry, error) {
	if len(value) > maxDiceExtension {
		return nil, fmt.Errorf("MultiTcbInfo of %d bytes", len(value))
	}
	var infos []diceTcbInfo
	rest, err := asn1.Unmarshal(value, &infos)
	if err != nil {
		return nil, fmt.Errorf("MultiTcbInfo does not parse: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("MultiTcbInfo: trailing data")
	}
	if len(infos) == 0 || len(infos) > maxDiceEntries {
		return nil, fmt.Errorf("MultiTcbInfo with %d entries", len(infos))
	}
	out := make([]diceEntry, 0, len(infos))
	for _, info := range infos {
		e := diceEntry{Vendor: info.Vendor, Model: info.Model, Version: info.Version, FWIDs: []string{}}
		if info.SVN != nil {
			e.SVN = info.SVN.String()
		}
		if info.Layer != nil {
			e.Layer = info.Layer.String()
		}
		for _, f := range info.FWIDs {
			e.FWIDs = append(e.FWIDs, f.HashAlg.String()+":"+hex.EncodeToString(f.Digest))
		}
		// OperationalFlags bit 1 is notSecure.
		e.NotSecure = info.Flags.BitLength > 1 && info.Flags.At(1) == 1
		out = append(out, e)
	}
	return out, nil
}

func describe(path, role string, cert *x509.Certificate) report {
	r := report{
		File:          path,
		Role:          role,
		Subject:       cert.Subject.String(),
		DNSNames:      cert.DNSNames,
		Serial:        hex.EncodeToString(cert.SerialNumber.Bytes()),
		NotBefore:     cert.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:      cert.NotAfter.UTC().Format(time.RFC3339),
		ExtensionOIDs: []string{},
		KeyAlgorithm:  cert.PublicKeyAlgorithm.String(),
		SigAlgorithm:  cert.SignatureAlgorithm.String(),
	}
	if r.DNSNames == nil {
		r.DNSNames = []string{}
	}
	r.IPAddresses = []string{}
	for _, ip := range cert.IPAddresses {
		r.IPAddresses = append(r.IPAddresses, ip.String())
	}
	if len(cert.URIs) == 1 {
		r.SpiffeID = cert.URIs[0].String()
	}
	for _, ext := range cert.Extensions {
		r.ExtensionOIDs = append(r.ExtensionOIDs, ext.Id.String())
	}
	return r
}

// checkCA: the Steward's CA is a self-signed CA certificate allowed to sign certificates.
func checkCA(ca *x509.Certificate) error {
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return errors.New("CA certificate: basicConstraints CA is not true")
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("CA certificate: keyUsage lacks keyCertSign")
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("CA certificate: not self-signed: %w", err)
	}
	return nil
}

// checkLeaf: the chain to the CA, then the X.509-SVID profile.
func checkLeaf(leaf *x509.Certificate, roots *x509.CertPool, at time.Time) error {
	// Verify accepts a chain if it allows ANY of opts.KeyUsages, so each usage is asked for alone.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("verify (extended key usage %d): %w", usage, err)
		}
	}
	// SPIFFE X509-SVID 4.1 / DESIGN.md: exactly one URI SAN, a SPIFFE ID.
	if len(leaf.URIs) != 1 {
		return fmt.Errorf("want exactly one URI SAN, got %d", len(leaf.URIs))
	}
	u := leaf.URIs[0]
	if u.Scheme != "spiffe" {
		return fmt.Errorf("URI SAN %q: scheme is not spiffe", u.String())
	}
	// SPIFFE ID 2.1-2.3: a trust domain, no userinfo, port, query or fragment.
	if u.Host == "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("URI SAN %q is not a valid SPIFFE ID", u.String())
	}
	if !bytes.Equal(leaf.RawSubject, emptyName) {
		return fmt.Errorf("subject is not empty: %q", leaf.Subject.String())
	}
	// RFC 5280 4.2.1.6: with an empty subject the SAN extension is critical.
	if critical, found := extension(leaf, oidSAN); !found || !critical {
		return errors.New("subjectAltName extension is missing or not critical")
	}
	if critical, found := extension(leaf, oidKeyUsage); !found || !critical {
		return errors.New("keyUsage extension is missing or not critical")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("keyUsage lacks digitalSignature")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return errors.New("keyUsage of a leaf allows keyCertSign or cRLSign")
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		return errors.New("basicConstraints missing or CA is true")
	}
	for _, ext := range leaf.Extensions {
		if ext.Id.String() != oidMultiTcbInfo {
			continue
		}
		if ext.Critical {
			return errors.New("MultiTcbInfo extension is critical")
		}
		if _, err := parseDice(ext.Value); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("parsecerts", flag.ContinueOnError)
	atText := fs.String("at", "", "verification time (RFC 3339); default now")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	at := time.Now()
	if *atText != "" {
		t, err := time.Parse(time.RFC3339, *atText)
		if err != nil {
			fmt.Fprintf(os.Stderr, "parsecerts: -at: %v\n", err)
			return 2
		}
		at = t
	}
	files := fs.Args()
	if len(files) < 1 {
		fmt.Fprintln(os.Stderr, "usage: parsecerts [-at RFC3339] CA.pem [LEAF.pem...]")
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	emit := func(v any) {
		if err := out.Encode(v); err != nil {
			fmt.Fprintf(os.Stderr, "parsecerts: writing stdout: %v\n", err)
			os.Exit(3)
		}
	}
	refuse := func(path, role string, err error) int {
		emit(failure{File: path, Role: role, Error: err.Error()})
		fmt.Fprintf(os.Stderr, "parsecerts: %s (%s): %v\n", path, role, err)
		var u unreadable
		if errors.As(err, &u) {
			return 3
		}
		return 1
	}

	ca, err := load(files[0])
	if err == nil {
		err = checkCA(ca)
	}
	if err != nil {
		// Without a CA no leaf can be verified.
		return refuse(files[0], "ca", err)
	}
	emit(describe(files[0], "ca", ca))
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	status := 0
	for _, path := range files[1:] {
		leaf, err := load(path)
		if err == nil {
			err = checkLeaf(leaf, roots, at)
		}
		if err != nil {
			if code := refuse(path, "leaf", err); code > status {
				status = code
			}
			continue
		}
		r := describe(path, "leaf", leaf)
		for _, ext := range leaf.Extensions {
			if ext.Id.String() == oidMultiTcbInfo {
				r.Dice, _ = parseDice(ext.Value) // checkLeaf parsed it already
			}
		}
		emit(r)
	}
	return status
}
