/*
 * keygen: an ECDSA P-256 key made and kept in PSA Crypto, never
 * exportable, and a CSR for it whose subject is CN=<the request's cn>.
 *
 * Two key slots: the committed key (the device's identity since the last
 * commit) and the key made since, for one CN. A keygen for the same CN
 * before a commit answers a CSR of the same key, so that a resent request
 * (or the station's retry after a reset) makes no second key; a commit
 * makes that key the committed one and destroys the one before.
 */
#include <errno.h>
#include <string.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_csr.h>
#include <psa/crypto.h>
#include <zcbor_decode.h>
#include <zcbor_encode.h>
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/mgmt/mcumgr/mgmt/mgmt.h>
#include <zephyr/mgmt/mcumgr/smp/smp.h>
#include <mgmt/mcumgr/util/zcbor_bulk.h>

#include <zerotouch/prov.h>
#include "internal.h"

LOG_MODULE_DECLARE(zerotouch_prov, CONFIG_ZEROTOUCH_PROV_LOG_LEVEL);

#define ALG_ECDSA_P256 "ecdsa-p256"
#define CSR_MAX 512

#if defined(CONFIG_ZEROTOUCH_PROV_KEY_PERSISTENT)
static psa_key_id_t key_id(uint8_t slot)
{
	return CONFIG_ZEROTOUCH_PROV_KEY_ID_BASE + slot;
}
#else
/* Volatile keys: their IDs are PSA's, and live as long as the RAM. */
static psa_key_id_t volatile_ids[2];

static psa_key_id_t key_id(uint8_t slot)
{
	return volatile_ids[slot];
}
#endif

static bool key_present(uint8_t slot)
{
	psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
	bool ok;

	if (slot == ZT_NO_SLOT) {
		return false;
	}
	ok = psa_get_key_attributes(key_id(slot), &attr) == PSA_SUCCESS;
	psa_reset_key_attributes(&attr);
	return ok;
}

static void destroy(uint8_t slot)
{
	psa_status_t s = psa_destroy_key(key_id(slot));

	if (s != PSA_SUCCESS && s != PSA_ERROR_INVALID_HANDLE) {
		LOG_WRN("destroy key %u: %d", slot, (int)s);
	}
#if !defined(CONFIG_ZEROTOUCH_PROV_KEY_PERSISTENT)
	volatile_ids[slot] = 0;
#endif
}

static int make_key(uint8_t slot)
{
	psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
	psa_key_id_t id;
	psa_status_t s;

	psa_set_key_type(&attr, PSA_KEY_TYPE_ECC_KEY_PAIR(PSA_ECC_FAMILY_SECP_R1));
	psa_set_key_bits(&attr, 256);
	/* No PSA_KEY_USAGE_EXPORT: the private key never leaves PSA. */
	psa_set_key_usage_flags(&attr, PSA_KEY_USAGE_SIGN_HASH | PSA_KEY_USAGE_VERIFY_HASH);
	psa_set_key_algorithm(&attr, PSA_ALG_ECDSA(PSA_ALG_SHA_256));
#if defined(CONFIG_ZEROTOUCH_PROV_KEY_PERSISTENT)
	psa_set_key_id(&attr, key_id(slot));
	psa_set_key_lifetime(&attr, PSA_KEY_LIFETIME_PERSISTENT);
#endif
	s = psa_generate_key(&attr, &id);
	psa_reset_key_attributes(&attr);
	if (s != PSA_SUCCESS) {
		LOG_ERR("generate key: %d", (int)s);
		return -EIO;
	}
#if !defined(CONFIG_ZEROTOUCH_PROV_KEY_PERSISTENT)
	volatile_ids[slot] = id;
#endif
	return 0;
}

static int rng(void *ctx, unsigned char *out, size_t len)
{
	ARG_UNUSED(ctx);
	return psa_generate_random(out, len) == PSA_SUCCESS ? 0 : -1;
}

/* csr writes the DER CSR of the key in slot with subject CN=cn into buf;
 * returns its length or a negative mbedTLS error. The CN goes in as the
 * value of the attribute, not through mbedTLS's DN string parser, so no
 * character of it needs escaping.
 */
static int csr(uint8_t slot, const char *cn, size_t cn_len, uint8_t *buf, size_t size,
	       uint8_t **der)
{
	mbedtls_x509write_csr req;
	mbedtls_pk_context pk;
	mbedtls_asn1_named_data *name;
	int n;

	mbedtls_x509write_csr_init(&req);
	mbedtls_pk_init(&pk);
	n = mbedtls_pk_setup_opaque(&pk, key_id(slot));
	if (n != 0) {
		goto out;
	}
	mbedtls_x509write_csr_set_key(&req, &pk);
	mbedtls_x509write_csr_set_md_alg(&req, MBEDTLS_MD_SHA256);
	name = mbedtls_asn1_store_named_data(&req.MBEDTLS_PRIVATE(subject), MBEDTLS_OID_AT_CN,
					     MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN),
					     (const unsigned char *)cn, cn_len);
	if (name == NULL) {
		n = MBEDTLS_ERR_ASN1_ALLOC_FAILED;
		goto out;
	}
	name->val.tag = MBEDTLS_ASN1_UTF8_STRING;
	n = mbedtls_x509write_csr_der(&req, buf, size, rng, NULL);
	if (n > 0) {
		*der = buf + size - n; /* mbedTLS writes at the end */
	}
out:
	mbedtls_x509write_csr_free(&req);
	mbedtls_pk_free(&pk);
	return n;
}

/* log_public logs the sha256 of the key's SubjectPublicKeyInfo, so that a
 * certificate can be matched with the key that stayed on the board.
 */
static void log_public(uint8_t slot, const char *what)
{
	uint8_t raw[65], spki[128], sum[32];
	size_t n, len;
	char hex[17];

	if (psa_export_public_key(key_id(slot), raw, sizeof(raw), &n) != PSA_SUCCESS || n != 65) {
		return;
	}
	/* SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING } */
	static const uint8_t prefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
					 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
					 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
	memcpy(spki, prefix, sizeof(prefix));
	memcpy(spki + sizeof(prefix), raw, n);
	if (psa_hash_compute(PSA_ALG_SHA_256, spki, sizeof(prefix) + n, sum, sizeof(sum), &len) !=
	    PSA_SUCCESS) {
		return;
	}
	for (int i = 0; i < 8; i++) {
		static const char d[] = "0123456789abcdef";

		hex[2 * i] = d[sum[i] >> 4];
		hex[2 * i + 1] = d[sum[i] & 0xf];
	}
	hex[16] = '\0';
	LOG_INF("%s key %u (PSA key 0x%08x): public key sha256 %s", what, slot,
		(unsigned int)key_id(slot), hex);
}

int zt_keygen_handler(struct smp_streamer *ctxt)
{
	zcbor_state_t *zsd = ctxt->reader->zs;
	zcbor_state_t *zse = ctxt->writer->zs;
	struct zcbor_string alg = {0}, cn = {0};
	static uint8_t buf[CSR_MAX];
	char cn_text[ZT_CN_MAX + 1];
	uint8_t *der = NULL;
	size_t decoded;
	struct zt_state *st;
	uint8_t slot;
	int rc, n;
	struct zcbor_map_decode_key_val req[] = {
		ZCBOR_MAP_DECODE_KEY_DECODER("alg", zcbor_tstr_decode, &alg),
		ZCBOR_MAP_DECODE_KEY_DECODER("cn", zcbor_tstr_decode, &cn),
	};

	if (zcbor_map_decode_bulk(zsd, req, ARRAY_SIZE(req), &decoded) != 0) {
		return MGMT_ERR_EINVAL;
	}
	if (cn.len == 0 || cn.len > ZT_CN_MAX || memchr(cn.value, '\0', cn.len) != NULL) {
		return zt_group_err(ctxt, ZT_RC_BAD_CN);
	}
	if (alg.len != strlen(ALG_ECDSA_P256) || memcmp(alg.value, ALG_ECDSA_P256, alg.len) != 0) {
		return zt_group_err(ctxt, ZT_RC_BAD_ALGORITHM);
	}
	memcpy(cn_text, cn.value, cn.len);
	cn_text[cn.len] = '\0';
	if (psa_crypto_init() != PSA_SUCCESS) {
		return zt_group_err(ctxt, ZT_RC_UNKNOWN);
	}

	k_mutex_lock(&zt_lock, K_FOREVER);
	st = zt_state_get();
	if (st->pending_key != ZT_NO_SLOT && strcmp(st->pending_cn, cn_text) == 0 &&
	    key_present(st->pending_key)) {
		slot = st->pending_key;
		log_public(slot, "kept");
	} else {
		slot = st->committed_key == 0 ? 1 : 0;
		destroy(slot);
		if (make_key(slot) != 0) {
			rc = zt_group_err(ctxt, ZT_RC_UNKNOWN);
			goto out;
		}
		st->pending_key = slot;
		strcpy(st->pending_cn, cn_text);
		if (zt_state_save() != 0) {
			destroy(slot);
			st->pending_key = ZT_NO_SLOT;
			st->pending_cn[0] = '\0';
			rc = zt_group_err(ctxt, ZT_RC_UNKNOWN);
			goto out;
		}
		log_public(slot, "made");
	}
	n = csr(slot, cn_text, cn.len, buf, sizeof(buf), &der);
	if (n <= 0) {
		LOG_ERR("CSR: -0x%04x", (unsigned int)-n);
		rc = zt_group_err(ctxt, ZT_RC_UNKNOWN);
		goto out;
	}
	rc = (zcbor_tstr_put_lit(zse, "csr") && zcbor_bstr_encode_ptr(zse, der, n))
		     ? MGMT_ERR_EOK
		     : MGMT_ERR_EMSGSIZE;
out:
	k_mutex_unlock(&zt_lock);
	return rc;
}

/* zt_keys_commit makes the key made since the last commit the committed
 * one and returns the slot of the key it supersedes (ZT_NO_SLOT for none),
 * which the caller drops with zt_keys_drop once the state is saved: a
 * reset in between leaves the old key unused, never the state naming a
 * key that is gone. Called with zt_lock held.
 */
uint8_t zt_keys_commit(struct zt_state *st)
{
	uint8_t old = st->committed_key;

	if (st->pending_key == ZT_NO_SLOT || !key_present(st->pending_key)) {
		return ZT_NO_SLOT;
	}
	st->committed_key = st->pending_key;
	st->pending_key = ZT_NO_SLOT;
	st->pending_cn[0] = '\0';
	log_public(st->committed_key, "committed");
	return old == st->committed_key ? ZT_NO_SLOT : old;
}

void zt_keys_drop(uint8_t slot)
{
	if (slot != ZT_NO_SLOT) {
		destroy(slot);
	}
}

/* zt_keys_loaded says, once the state is loaded at the first request
 * after a reset, whether the keys it names are in PSA storage.
 */
void zt_keys_loaded(const struct zt_state *st)
{
	if (psa_crypto_init() != PSA_SUCCESS) {
		return;
	}
	if (st->committed_key != ZT_NO_SLOT) {
		if (key_present(st->committed_key)) {
			log_public(st->committed_key, "committed");
		} else {
			LOG_WRN("committed key %u is not in PSA storage", st->committed_key);
		}
	}
	if (st->pending_key != ZT_NO_SLOT && key_present(st->pending_key)) {
		log_public(st->pending_key, "uncommitted");
	}
}

int zerotouch_prov_key_id(psa_key_id_t *id)
{
	int rc = -ENOENT;

	k_mutex_lock(&zt_lock, K_FOREVER);
	struct zt_state *st = zt_state_get();

	if (st->committed_key != ZT_NO_SLOT && key_present(st->committed_key)) {
		*id = key_id(st->committed_key);
		rc = 0;
	}
	k_mutex_unlock(&zt_lock);
	return rc;
}
