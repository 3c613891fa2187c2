/* Reading evaluation and calibration text: whole files, documents split on a separator, and
 * the joined text of the WikiText-2 and C4 perplexity protocols. Owns the strings it returns;
 * knows nothing of tokenizers or models. */
#ifndef SPARQ_TEXT_H
#define SPARQ_TEXT_H

#include <stddef.h>

#include "err.h"

#define TEXT_DOC_SEPARATOR "<|endoftext|>"

/* The whole file as a NUL-terminated string; *len excludes the NUL. A NUL byte inside the file
 * is an error (every tokenizer here reads C strings). */
int text_read_file(const char *path, char **out, size_t *len, err *e);

/* A list of owned strings. */
typedef struct {
    char **items;
    int    n;
} text_list;

void text_list_free(text_list *l);

/* Documents of a file: JSON lines with a "text" field when the file ends in .jsonl, otherwise
 * the text split on TEXT_DOC_SEPARATOR. Each is stripped of surrounding whitespace (as Python's
 * str.strip) and empty ones are dropped. */
int text_read_documents(const char *path, text_list *out, err *e);

/* The text of the windows protocol (algorithms.md §8): for .jsonl, the documents' texts joined
 * with " " (the C4 protocol); otherwise the file's lines joined with "\n\n" as Hugging Face's
 * wikitext rows are (each row keeps its newline, whitespace-only rows become ""), which is
 * exactly `"\n\n".join(test["text"])` for wiki.test.raw. */
int text_read_joined(const char *path, char **out, err *e);

/* Token ids written as text: the non-negative decimal integers of s[0 .. len), separated by
 * spaces or tabs, into *ids (owned, NULL when there are none). `what` names the source in the
 * message ("ids.txt line 3", "--prompt-ids"). */
int text_parse_ids(const char *s, size_t len, const char *what, int **ids, int *n, err *e);

#endif
