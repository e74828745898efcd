/*
 * fuzz_cfg.c - libFuzzer target for the config loader (cfg_parse_string(),
 * the text half of cfg_load()) and the reload comparison.
 *
 * Any text must either load, and then compare equal to itself, or fail
 * with *out untouched and a message starting with the file name; never
 * crash, never leak (ASan's leak check runs at exit).
 *
 * Inputs with "@include" are skipped: libconfig 1.5 would open whatever file
 * they name (/dev/zero never ends), and it offers no hook to stop it.
 *
 * One leak is libconfig's own and suppressed: on a syntax error at a string
 * token, the scanner's copy of the string (strbuf_append, or libconfig_yylex
 * for "") is never freed (a few bytes per refused file: its grammar has no
 * %destructor).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define NAME "/fuzz/kafkagate.cfg"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[512], msg[256];
	struct cfg *c = NULL, *untouched = (struct cfg *)(void *)err;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (strstr(text, "@include")) {
		free(text);
		return 0;
	}
	err[0] = '\0';
	c = untouched;
	if (cfg_parse_string(text, NAME, &c, err, sizeof(err)) == 0) {
		CHECK(c && c != untouched && c->nlisteners > 0 && strcmp(c->path, NAME) == 0);
		CHECK(cfg_reload_diff(c, c, msg, sizeof(msg)) == 0 && msg[0] == '\0');
		cfg_free(c);
	} else {
		CHECK(c == untouched);
		CHECK(strncmp(err, NAME, strlen(NAME)) == 0);
	}
	free(text);
	return 0;
}
