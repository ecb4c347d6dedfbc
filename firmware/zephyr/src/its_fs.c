/*
 * PSA internal trusted storage (PSA Storage API 1.0, psa_its_*) over the
 * file system, for builds without TF-M: one file a UID under
 * CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR, a 4-byte flags header then the data,
 * replaced by rename. mbedTLS's PSA key store (MBEDTLS_PSA_CRYPTO_STORAGE_C)
 * keeps persistent keys here. The data is not encrypted: this is storage
 * for a simulator or a board without a secure partition, not a secure
 * element (README.md).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <psa/crypto.h>
#include <psa/internal_trusted_storage.h>
#include <zephyr/fs/fs.h>
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/sys/byteorder.h>

#include "internal.h"

LOG_MODULE_DECLARE(zerotouch_prov, CONFIG_ZEROTOUCH_PROV_LOG_LEVEL);

#define NAME_MAX_LEN (sizeof(CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR) + 1 + 16 + 4)

static void name(psa_storage_uid_t uid, char *out, const char *suffix)
{
	snprintf(out, NAME_MAX_LEN, "%s/%08x%08x%s", CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR,
		 (unsigned int)(uid >> 32), (unsigned int)uid, suffix);
}

/* open_uid opens uid's file and reads its header. */
static psa_status_t open_uid(psa_storage_uid_t uid, struct fs_file_t *f,
			     struct psa_storage_info_t *info)
{
	char path[NAME_MAX_LEN];
	struct fs_dirent ent;
	uint8_t hdr[4];
	int rc;

	name(uid, path, "");
	if (fs_stat(path, &ent) != 0) {
		return PSA_ERROR_DOES_NOT_EXIST;
	}
	fs_file_t_init(f);
	rc = fs_open(f, path, FS_O_READ);
	if (rc != 0) {
		return rc == -ENOENT ? PSA_ERROR_DOES_NOT_EXIST : PSA_ERROR_STORAGE_FAILURE;
	}
	if (ent.size < sizeof(hdr) || fs_read(f, hdr, sizeof(hdr)) != sizeof(hdr)) {
		fs_close(f);
		return PSA_ERROR_DATA_CORRUPT;
	}
	info->flags = sys_get_le32(hdr);
	info->size = ent.size - sizeof(hdr);
	return PSA_SUCCESS;
}

psa_status_t psa_its_get_info(psa_storage_uid_t uid, struct psa_storage_info_t *p_info)
{
	struct fs_file_t f;
	psa_status_t s = open_uid(uid, &f, p_info);

	if (s == PSA_SUCCESS) {
		fs_close(&f);
	}
	return s;
}

psa_status_t psa_its_get(psa_storage_uid_t uid, uint32_t data_offset, uint32_t data_length,
			 void *p_data, size_t *p_data_length)
{
	struct psa_storage_info_t info;
	struct fs_file_t f;
	psa_status_t s = open_uid(uid, &f, &info);
	ssize_t n = 0;

	if (s != PSA_SUCCESS) {
		return s;
	}
	if (data_offset > info.size || data_length > info.size - data_offset) {
		s = PSA_ERROR_INVALID_ARGUMENT;
	} else if (fs_seek(&f, sizeof(uint32_t) + data_offset, FS_SEEK_SET) != 0 ||
		   (n = fs_read(&f, p_data, data_length)) != (ssize_t)data_length) {
		s = PSA_ERROR_STORAGE_FAILURE;
	} else if (p_data_length != NULL) {
		*p_data_length = n;
	}
	fs_close(&f);
	return s;
}

psa_status_t psa_its_set(psa_storage_uid_t uid, uint32_t data_length, const void *p_data,
			 psa_storage_create_flags_t create_flags)
{
	char path[NAME_MAX_LEN], tmp[NAME_MAX_LEN];
	struct psa_storage_info_t info;
	struct fs_dirent ent;
	struct fs_file_t f;
	uint8_t hdr[4];
	int rc;

	if (psa_its_get_info(uid, &info) == PSA_SUCCESS &&
	    (info.flags & PSA_STORAGE_FLAG_WRITE_ONCE)) {
		return PSA_ERROR_NOT_PERMITTED;
	}
	if (fs_stat(CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR, &ent) != 0) {
		rc = fs_mkdir(CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR);
		if (rc != 0) {
			LOG_ERR("mkdir %s: %d", CONFIG_ZEROTOUCH_PROV_PSA_ITS_DIR, rc);
			return PSA_ERROR_STORAGE_FAILURE;
		}
	}
	name(uid, path, "");
	name(uid, tmp, ".new");
	sys_put_le32(create_flags, hdr);
	fs_file_t_init(&f);
	zt_remove_stale(tmp);
	rc = fs_open(&f, tmp, FS_O_CREATE | FS_O_WRITE);
	if (rc != 0) {
		return PSA_ERROR_STORAGE_FAILURE;
	}
	if (fs_write(&f, hdr, sizeof(hdr)) != sizeof(hdr) ||
	    fs_write(&f, p_data, data_length) != (ssize_t)data_length || fs_sync(&f) != 0) {
		fs_close(&f);
		(void)fs_unlink(tmp);
		return PSA_ERROR_INSUFFICIENT_STORAGE;
	}
	fs_close(&f);
	if (fs_rename(tmp, path) != 0) {
		(void)fs_unlink(tmp);
		return PSA_ERROR_STORAGE_FAILURE;
	}
	return PSA_SUCCESS;
}

psa_status_t psa_its_remove(psa_storage_uid_t uid)
{
	char path[NAME_MAX_LEN];
	struct psa_storage_info_t info;
	psa_status_t s = psa_its_get_info(uid, &info);

	if (s != PSA_SUCCESS) {
		return s;
	}
	if (info.flags & PSA_STORAGE_FLAG_WRITE_ONCE) {
		return PSA_ERROR_NOT_PERMITTED;
	}
	name(uid, path, "");
	return fs_unlink(path) == 0 ? PSA_SUCCESS : PSA_ERROR_STORAGE_FAILURE;
}
