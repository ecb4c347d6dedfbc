/*
 * The PSA status codes, for mbedTLS's key store built over a platform's
 * own internal trusted storage (here its_fs.c, CONFIG_ZEROTOUCH_PROV_PSA_ITS_FS).
 * On TF-M builds TF-M provides this header; this folder is then not on
 * the include path.
 */
#ifndef ZEROTOUCH_PSA_ERROR_H_
#define ZEROTOUCH_PSA_ERROR_H_
#include <psa/crypto_types.h>
#include <psa/crypto_values.h>
#endif
