/*
 * zerotouch's provisioning group (MCUmgr group 64), as specified in
 * zerotouch's board/doc.go:
 *
 *   0 identity (read)  {} -> {serial, model, hw, fw, caps}
 *   1 tpm (write)      {cmd: bytes} -> {rsp: bytes}
 *   2 keygen (write)   {alg, cn} -> {csr: bytes (DER)}        (keygen.c)
 *   3 commit (write)   {config_sha256: bytes, path?: text} -> {}
 *
 * Group result codes go out through smp_add_cmd_err (SMP version 2,
 * err{group, rc}); version 1 requests get the nearest MGMT_ERR code
 * (translate_error). Zephyr's MCUmgr does not show a handler the SMP
 * sequence number, so a resent request cannot be recognised as such:
 * every command is idempotent instead (see README.md).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zcbor_common.h>
#include <zcbor_decode.h>
#include <zcbor_encode.h>
#include <zephyr/fs/fs.h>
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/mgmt/mcumgr/mgmt/handlers.h>
#include <zephyr/mgmt/mcumgr/mgmt/mgmt.h>
#include <zephyr/mgmt/mcumgr/smp/smp.h>
#include <zephyr/sys/byteorder.h>
#include <zephyr/sys/util.h>
#include <mgmt/mcumgr/util/zcbor_bulk.h>

#if defined(CONFIG_MCUMGR_GRP_FS_FILE_ACCESS_HOOK)
#include <zephyr/mgmt/mcumgr/mgmt/callbacks.h>
#include <zephyr/mgmt/mcumgr/grp/fs_mgmt/fs_mgmt.h>
#include <zephyr/mgmt/mcumgr/grp/fs_mgmt/fs_mgmt_callbacks.h>
#endif
#if defined(CONFIG_MCUMGR_GRP_IMG) && defined(CONFIG_MCUBOOT_IMG_MANAGER)
#include <zephyr/mgmt/mcumgr/grp/img_mgmt/img_mgmt.h>
#endif
#if defined(CONFIG_ZEROTOUCH_PROV_SERIAL_HWINFO)
#include <zephyr/drivers/hwinfo.h>
#endif
#if defined(CONFIG_ZEROTOUCH_PROV_SERIAL_SETTINGS)
#include <zephyr/settings/settings.h>
#endif
#include <version.h>

#include <zerotouch/prov.h>
#include "internal.h"

LOG_MODULE_REGISTER(zerotouch_prov, CONFIG_ZEROTOUCH_PROV_LOG_LEVEL);

#define GROUP CONFIG_ZEROTOUCH_PROV_GROUP_ID

enum {
	CMD_IDENTITY = 0,
	CMD_TPM = 1,
	CMD_KEYGEN = 2,
	CMD_COMMIT = 3,
};

#define SERIAL_MAX 64

static const struct zerotouch_tpm_transport *tpm;

void zerotouch_prov_set_tpm(const struct zerotouch_tpm_transport *t)
{
	k_mutex_lock(&zt_lock, K_FOREVER);
	tpm = t;
	k_mutex_unlock(&zt_lock);
}

bool zerotouch_prov_is_provisioned(char *path, size_t path_size)
{
	bool p;

	k_mutex_lock(&zt_lock, K_FOREVER);
	p = zt_state_get()->provisioned;
	if (p && path != NULL && path_size > 0) {
		strncpy(path, zt_state_get()->config_path, path_size - 1);
		path[path_size - 1] = '\0';
	}
	k_mutex_unlock(&zt_lock);
	return p;
}

int zt_group_err(struct smp_streamer *ctxt, enum zt_prov_rc rc)
{
	return smp_add_cmd_err(ctxt->writer->zs, GROUP, rc) ? MGMT_ERR_EOK : MGMT_ERR_EMSGSIZE;
}

static void tpm_forget(void);

/* Identity. */

#if defined(CONFIG_ZEROTOUCH_PROV_SERIAL_SETTINGS)
static int serial_read(const char *key, size_t len, settings_read_cb read_cb, void *cb_arg,
		       void *param)
{
	char *out = param;
	ssize_t n;

	if (key != NULL || len > SERIAL_MAX) {
		return 0;
	}
	n = read_cb(cb_arg, out, len);
	out[n > 0 ? n : 0] = '\0';
	return 0;
}
#endif

/* serial writes the board's serial number; an empty one is an error. */
static int serial(char *out, size_t size)
{
	size_t p = strlen(CONFIG_ZEROTOUCH_PROV_SERIAL_PREFIX);

	if (p >= size) {
		return -ENOMEM;
	}
	memcpy(out, CONFIG_ZEROTOUCH_PROV_SERIAL_PREFIX, p);
	out[p] = '\0';
#if defined(CONFIG_ZEROTOUCH_PROV_SERIAL_HWINFO)
	uint8_t id[16];
	ssize_t n = hwinfo_get_device_id(id, sizeof(id));

	if (n <= 0) {
		return n < 0 ? (int)n : -ENODATA;
	}
	for (size_t i = 0, q = p; i < (size_t)n && q + 2 < size; i++, q += 2) {
		snprintf(out + q, 3, "%02X", id[i]);
	}
#elif defined(CONFIG_ZEROTOUCH_PROV_SERIAL_STRING)
	strncpy(out + p, CONFIG_ZEROTOUCH_PROV_SERIAL, size - p - 1);
	out[size - 1] = '\0';
#elif defined(CONFIG_ZEROTOUCH_PROV_SERIAL_SETTINGS)
	char v[SERIAL_MAX + 1] = "";
	int rc = settings_load_subtree_direct(CONFIG_ZEROTOUCH_PROV_SERIAL_KEY, serial_read, v);

	if (rc != 0) {
		return rc;
	}
	strncpy(out + p, v, size - p - 1);
	out[size - 1] = '\0';
#endif
	return out[p] == '\0' ? -ENODATA : 0;
}

static void fw_version(char *out, size_t size)
{
	if (sizeof(CONFIG_ZEROTOUCH_PROV_FW_VERSION) > 1) {
		strncpy(out, CONFIG_ZEROTOUCH_PROV_FW_VERSION, size - 1);
		out[size - 1] = '\0';
		return;
	}
#if defined(CONFIG_MCUMGR_GRP_IMG) && defined(CONFIG_MCUBOOT_IMG_MANAGER)
	struct image_version ver;

	if (img_mgmt_my_version(&ver) == 0 && img_mgmt_ver_str(&ver, out) >= 0) {
		return;
	}
#endif
	strncpy(out, KERNEL_VERSION_STRING, size - 1);
	out[size - 1] = '\0';
}

static int identity(struct smp_streamer *ctxt)
{
	zcbor_state_t *zse = ctxt->writer->zs;
	char sn[SERIAL_MAX + 1];
	char fw[32];
	const char *caps[4];
	size_t ncaps = 0;
	bool ok;
	int rc = serial(sn, sizeof(sn));

	if (rc != 0) {
		LOG_ERR("no serial number: %d", rc);
		return zt_group_err(ctxt, ZT_RC_UNKNOWN);
	}
	fw_version(fw, sizeof(fw));
	k_mutex_lock(&zt_lock, K_FOREVER);
	/* The station's first command after a reset: the state (and its
	 * log line) is loaded now rather than at the first change. A new
	 * session starts here too: no TPM answer is repeated across it.
	 */
	(void)zt_state_get();
	tpm_forget();
	if (tpm != NULL) {
		caps[ncaps++] = "tpm";
	}
	k_mutex_unlock(&zt_lock);
	if (IS_ENABLED(CONFIG_ZEROTOUCH_PROV_KEYGEN)) {
		caps[ncaps++] = "keygen";
	}
	if (IS_ENABLED(CONFIG_MCUMGR_GRP_FS)) {
		caps[ncaps++] = "fs";
	}
	if (IS_ENABLED(CONFIG_MCUMGR_GRP_IMG)) {
		caps[ncaps++] = "image";
	}
	ok = zcbor_tstr_put_lit(zse, "serial") && zcbor_tstr_put_term(zse, sn) &&
	     zcbor_tstr_put_lit(zse, "model") && zcbor_tstr_put_term(zse, CONFIG_ZEROTOUCH_PROV_MODEL) &&
	     zcbor_tstr_put_lit(zse, "hw") && zcbor_tstr_put_term(zse, CONFIG_ZEROTOUCH_PROV_HW) &&
	     zcbor_tstr_put_lit(zse, "fw") && zcbor_tstr_put_term(zse, fw) &&
	     zcbor_tstr_put_lit(zse, "caps") && zcbor_list_start_encode(zse, ncaps);
	for (size_t i = 0; ok && i < ncaps; i++) {
		ok = zcbor_tstr_put_term(zse, caps[i]);
	}
	ok = ok && zcbor_list_end_encode(zse, ncaps);
	return ok ? MGMT_ERR_EOK : MGMT_ERR_EMSGSIZE;
}

/* Paths. */

static bool has_prefix(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* is_clean reports whether path is absolute, with no empty, "." or ".."
 * component: the only form the checks below can compare (littlefs would
 * take "/lfs1/./.psa" to the key folder).
 */
static bool is_clean(const char *path)
{
	const char *c = path;

	if (*c != '/') {
		return false;
	}
	while (*c == '/') {
		const char *end = strchr(c + 1, '/');
		size_t n = end ? (size_t)(end - c - 1) : strlen(c + 1);

		if (n == 0 || (n == 1 && c[1] == '.') || (n == 2 && c[1] == '.' && c[2] == '.')) {
			return false;
		}
		if (end == NULL) {
			return true;
		}
		c = end;
	}
	return true;
}

/* is_private reports whether path holds key material, which MCUmgr's file
 * system group may neither read nor write.
 */
static bool is_private(const char *path)
{
#if defined(CONFIG_ZEROTOUCH_PROV_PSA_ITS_FS)
	return has_prefix(path, CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR);
#else
	ARG_UNUSED(path);
	return false;
#endif
}

/* is_state reports whether path is the group's own state, which MCUmgr's
 * file system group may read and may not write.
 */
static bool is_state(const char *path)
{
	return has_prefix(path, CONFIG_ZEROTOUCH_PROV_STATE_PATH) ||
	       has_prefix(path, CONFIG_ZEROTOUCH_PROV_STATE_PATH ".new");
}

/* Commit. */

static int commit(struct smp_streamer *ctxt)
{
	zcbor_state_t *zsd = ctxt->reader->zs;
	struct zcbor_string sum = {0}, path = {0};
	char name[CONFIG_ZEROTOUCH_PROV_PATH_MAX + 1];
	uint8_t got[32];
	size_t decoded;
	struct zt_state *st;
	int rc;
	struct zcbor_map_decode_key_val req[] = {
		ZCBOR_MAP_DECODE_KEY_DECODER("config_sha256", zcbor_bstr_decode, &sum),
		ZCBOR_MAP_DECODE_KEY_DECODER("path", zcbor_tstr_decode, &path),
	};

	if (zcbor_map_decode_bulk(zsd, req, ARRAY_SIZE(req), &decoded) != 0 || sum.len != 32 ||
	    path.len >= sizeof(name)) {
		return MGMT_ERR_EINVAL;
	}
	if (path.len == 0) {
		strncpy(name, CONFIG_ZEROTOUCH_PROV_CONFIG_PATH, sizeof(name) - 1);
		name[sizeof(name) - 1] = '\0';
	} else if (memchr(path.value, '\0', path.len) != NULL) {
		return MGMT_ERR_EINVAL;
	} else {
		memcpy(name, path.value, path.len);
		name[path.len] = '\0';
	}
	if (!is_clean(name) || is_private(name) || is_state(name)) {
		return MGMT_ERR_EINVAL;
	}

	k_mutex_lock(&zt_lock, K_FOREVER);
	rc = zt_sha256_file(name, got);
	if (rc == -ENOENT) {
		LOG_WRN("commit refused: no %s", name);
		rc = zt_group_err(ctxt, ZT_RC_NO_CONFIG);
		goto out;
	}
	if (rc != 0) {
		LOG_ERR("commit: read %s: %d", name, rc);
		rc = zt_group_err(ctxt, ZT_RC_UNKNOWN);
		goto out;
	}
	if (memcmp(got, sum.value, sizeof(got)) != 0) {
		LOG_WRN("commit refused: %s differs", name);
		rc = zt_group_err(ctxt, ZT_RC_CONFIG_MISMATCH);
		goto out;
	}
	st = zt_state_get();
	st->provisioned = true;
	memcpy(st->config_sha256, got, sizeof(got));
	strcpy(st->config_path, name);
#if defined(CONFIG_ZEROTOUCH_PROV_KEYGEN)
	uint8_t old = zt_keys_commit(st);
#endif
	if (zt_state_save() != 0) {
		zt_state_forget();
		rc = zt_group_err(ctxt, ZT_RC_UNKNOWN);
		goto out;
	}
#if defined(CONFIG_ZEROTOUCH_PROV_KEYGEN)
	zt_keys_drop(old);
#endif
	LOG_INF("provisioned: config %s", name);
	rc = MGMT_ERR_EOK;
out:
	k_mutex_unlock(&zt_lock);
	return rc;
}

/* TPM. */

#define TPM_BUF CONFIG_ZEROTOUCH_PROV_TPM_BUF_SIZE
#define TPM_CC_GET_RANDOM 0x0000017b

static uint8_t tpm_cmd[TPM_BUF], tpm_rsp[TPM_BUF];
static size_t tpm_cmd_len, tpm_rsp_len;

static void tpm_forget(void)
{
	tpm_cmd_len = 0;
	tpm_rsp_len = 0;
}

/* tpm_command passes one raw command through. A command identical to the
 * previous one, which succeeded, is the station resending after a lost
 * answer (MCUmgr hides the sequence number that would tell): it is
 * answered from the previous response rather than run twice, so that a
 * resent CreatePrimary does not leave a second object in the TPM.
 * GetRandom is always run.
 */
static int tpm_command(struct smp_streamer *ctxt)
{
	zcbor_state_t *zsd = ctxt->reader->zs;
	zcbor_state_t *zse = ctxt->writer->zs;
	struct zcbor_string cmd = {0};
	size_t decoded;
	int rc;
	struct zcbor_map_decode_key_val req[] = {
		ZCBOR_MAP_DECODE_KEY_DECODER("cmd", zcbor_bstr_decode, &cmd),
	};

	if (zcbor_map_decode_bulk(zsd, req, ARRAY_SIZE(req), &decoded) != 0) {
		return MGMT_ERR_EINVAL;
	}
	k_mutex_lock(&zt_lock, K_FOREVER);
	if (tpm == NULL) {
		rc = zt_group_err(ctxt, ZT_RC_NO_TPM);
		goto out;
	}
	if (cmd.len < 10 || cmd.len > TPM_BUF) {
		rc = MGMT_ERR_EINVAL;
		goto out;
	}
	uint32_t cc = sys_get_be32(cmd.value + 6);
	/* Only a success is answered again: a command that failed changed
	 * nothing, and one answered TPM_RC_RETRY or TPM_RC_YIELDED must run.
	 */
	bool again = tpm_rsp_len >= 10 && sys_get_be32(tpm_rsp + 6) == 0 &&
		     cmd.len == tpm_cmd_len && memcmp(cmd.value, tpm_cmd, cmd.len) == 0 &&
		     cc != TPM_CC_GET_RANDOM;

	if (!again) {
		size_t n = 0;

		tpm_rsp_len = 0;
		memcpy(tpm_cmd, cmd.value, cmd.len);
		tpm_cmd_len = cmd.len;
		rc = tpm->transceive(tpm, tpm_cmd, tpm_cmd_len, tpm_rsp, sizeof(tpm_rsp), &n);
		if (rc != 0 || n < 10) {
			LOG_ERR("TPM command 0x%x failed: %d", cc, rc);
			rc = zt_group_err(ctxt, ZT_RC_TPM_FAILED);
			goto out;
		}
		tpm_rsp_len = n;
	} else {
		LOG_INF("TPM command 0x%x repeated: answered again", cc);
	}
	rc = (zcbor_tstr_put_lit(zse, "rsp") && zcbor_bstr_encode_ptr(zse, tpm_rsp, tpm_rsp_len))
		     ? MGMT_ERR_EOK
		     : MGMT_ERR_EMSGSIZE;
out:
	k_mutex_unlock(&zt_lock);
	return rc;
}

#if !defined(CONFIG_ZEROTOUCH_PROV_KEYGEN)
int zt_keygen_handler(struct smp_streamer *ctxt)
{
	return MGMT_ERR_ENOTSUP;
}
#endif

/* MCUmgr's file system group: the key store is out of its reach, the
 * state file is read-only to it, and a write to the committed
 * configuration unprovisions the board until the next commit.
 */
#if defined(CONFIG_MCUMGR_GRP_FS_FILE_ACCESS_HOOK)
static enum mgmt_cb_return fs_access(uint32_t event, enum mgmt_cb_return prev_status, int32_t *rc,
				     uint16_t *group, bool *abort_more, void *data,
				     size_t data_size)
{
	struct fs_mgmt_file_access *fa = data;
	bool write = fa->access == FS_MGMT_FILE_ACCESS_WRITE;

	if (event != MGMT_EVT_OP_FS_MGMT_FILE_ACCESS || data_size != sizeof(*fa)) {
		return MGMT_CB_OK;
	}
	if (!is_clean(fa->filename)) {
		LOG_WRN("file system group refused %s: not a clean path", fa->filename);
		*group = MGMT_GROUP_ID_FS;
		*rc = FS_MGMT_ERR_FILE_INVALID_NAME;
		return MGMT_CB_ERROR_ERR;
	}
	if (is_private(fa->filename) || (write && is_state(fa->filename))) {
		LOG_WRN("file system group refused %s", fa->filename);
		/* A group error, not MGMT_ERR_EACCESSDENIED: Zephyr 3.4's
		 * fs_mgmt returns an SMP error from the hook without giving
		 * back its lock, which leaves the group busy until reset.
		 */
		*group = MGMT_GROUP_ID_FS;
		*rc = FS_MGMT_ERR_FILE_OPEN_FAILED;
		return MGMT_CB_ERROR_ERR;
	}
	if (write) {
		k_mutex_lock(&zt_lock, K_FOREVER);
		struct zt_state *st = zt_state_get();

		if (st->provisioned && strcmp(st->config_path, fa->filename) == 0) {
			st->provisioned = false;
			if (zt_state_save() != 0) {
				/* Still refused at the next boot: the file's hash
				 * is checked against the committed one.
				 */
				zt_state_forget();
				k_mutex_unlock(&zt_lock);
				*group = MGMT_GROUP_ID_FS;
				*rc = FS_MGMT_ERR_FILE_WRITE_FAILED;
				return MGMT_CB_ERROR_ERR;
			}
			LOG_INF("%s rewritten: not provisioned until the next commit", fa->filename);
		}
		k_mutex_unlock(&zt_lock);
	}
	return MGMT_CB_OK;
}

static struct mgmt_callback fs_hook = {
	.callback = fs_access,
	.event_id = MGMT_EVT_OP_FS_MGMT_FILE_ACCESS,
};
#endif

#if defined(CONFIG_MCUMGR_SMP_SUPPORT_ORIGINAL_PROTOCOL)
/* The version 1 code of each group code, as zerotouch's virtual board
 * answers it.
 */
static int translate_error(uint16_t err)
{
	switch (err) {
	case ZT_RC_NO_CONFIG:
		return MGMT_ERR_ENOENT;
	case ZT_RC_CONFIG_MISMATCH:
		return MGMT_ERR_EBADSTATE;
	case ZT_RC_NO_TPM:
	case ZT_RC_BAD_ALGORITHM:
		return MGMT_ERR_ENOTSUP;
	case ZT_RC_BAD_CN:
		return MGMT_ERR_EINVAL;
	default:
		return MGMT_ERR_EUNKNOWN;
	}
}
#endif

static const struct mgmt_handler handlers[] = {
	[CMD_IDENTITY] = {.mh_read = identity},
	[CMD_TPM] = {.mh_write = tpm_command},
	[CMD_KEYGEN] = {.mh_write = zt_keygen_handler},
	[CMD_COMMIT] = {.mh_write = commit},
};

static struct mgmt_group group = {
	.mg_handlers = handlers,
	.mg_handlers_count = ARRAY_SIZE(handlers),
	.mg_group_id = GROUP,
#if defined(CONFIG_MCUMGR_SMP_SUPPORT_ORIGINAL_PROTOCOL)
	.mg_translate_error = translate_error,
#endif
};

static void prov_init(void)
{
	mgmt_register_group(&group);
#if defined(CONFIG_MCUMGR_GRP_FS_FILE_ACCESS_HOOK)
	mgmt_callback_register(&fs_hook);
#endif
}

MCUMGR_HANDLER_DEFINE(zerotouch_prov, prov_init);
