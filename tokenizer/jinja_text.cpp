// tokenizer/jinja_text.cpp — Python str semantics over UTF-8 (see jinja_text.h).
#include "tokenizer/jinja_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <stdexcept>

namespace fe::jinja::text {
namespace {

struct CodePointRange {
  char32_t first, last;
};

template <size_t N>
bool in_table(char32_t c, const CodePointRange (&table)[N]) {
  const auto* it = std::upper_bound(std::begin(table), std::end(table), c,
                                    [](char32_t v, const CodePointRange& r) { return v < r.first; });
  return it != std::begin(table) && c <= (it - 1)->last;
}

// Python's str methods as CPython 3.11 computes them from its Unicode 14.0 database, here from
// utf8proc's categories and case mappings plus the tables below, where Python's data says more than
// a category. Every table is what this one-liner prints for its predicate P (over Python 3.11's
// unicodedata, and utf8proc through ctypes):
//   python3 -c "import ctypes,unicodedata as u,itertools as t;U=ctypes.CDLL('libutf8proc.so.2');
//   P=lambda c:...;r=[i for i in range(0x110000) if P(chr(i))];print(', '.join('{0x%X, 0x%X}'%(g[0],
//   g[-1]) for g in ([i for _,i in x] for _,x in t.groupby(enumerate(r),lambda p:p[1]-p[0]))))"
// tests/chat_template_test.cpp compares every code point with Python.

// utf8proc 2.8 has Unicode 15.0, which assigned these; Python 3.11 (Unicode 14.0) treats them as
// unassigned (Cn: not printable, no case, no class).
// P = lambda c: u.category(c) == 'Cn' and U.utf8proc_category(ord(c)) != 0
constexpr CodePointRange kAssignedAfterUnicode14[] = {
    {0xCF3, 0xCF3},     {0xECE, 0xECE},     {0x10EFD, 0x10EFF}, {0x1123F, 0x11241}, {0x11B00, 0x11B09},
    {0x11F00, 0x11F10}, {0x11F12, 0x11F3A}, {0x11F3E, 0x11F59}, {0x1342F, 0x1342F}, {0x13439, 0x13455},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1D2C0, 0x1D2D3}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D},
    {0x1E08F, 0x1E08F}, {0x1E4D0, 0x1E4F9}, {0x1F6DC, 0x1F6DC}, {0x1F774, 0x1F776}, {0x1F77B, 0x1F77F},
    {0x1F7D9, 0x1F7D9}, {0x1FA75, 0x1FA77}, {0x1FA87, 0x1FA88}, {0x1FAAD, 0x1FAAF}, {0x1FABB, 0x1FABD},
    {0x1FABF, 0x1FABF}, {0x1FACE, 0x1FACF}, {0x1FADA, 0x1FADB}, {0x1FAE8, 0x1FAE8}, {0x1FAF7, 0x1FAF8},
    {0x2B739, 0x2B739}, {0x31350, 0x323AF},
};

// str.isdigit beyond the decimal digits (Nd): Numeric_Type=Digit (superscripts, circled digits).
// P = lambda c: c.isdigit() and u.category(c) != 'Nd'
constexpr CodePointRange kDigitsBeyondDecimal[] = {
    {0xB2, 0xB3},     {0xB9, 0xB9},       {0x1369, 0x1371},   {0x19DA, 0x19DA},   {0x2070, 0x2070},
    {0x2074, 0x2079}, {0x2080, 0x2089},   {0x2460, 0x2468},   {0x2474, 0x247C},   {0x2488, 0x2490},
    {0x24EA, 0x24EA}, {0x24F5, 0x24FD},   {0x24FF, 0x24FF},   {0x2776, 0x277E},   {0x2780, 0x2788},
    {0x278A, 0x2792}, {0x10A40, 0x10A43}, {0x10E60, 0x10E68}, {0x11052, 0x1105A}, {0x1F100, 0x1F10A},
};

// str.isnumeric beyond the categories Nd, Nl, No (all numeric): Numeric_Type=Numeric letters, the
// CJK numerals.
// P = lambda c: c.isnumeric() and u.category(c) not in ('Nd', 'Nl', 'No')
constexpr CodePointRange kNumericLetters[] = {
    {0x3405, 0x3405},   {0x3483, 0x3483},   {0x382A, 0x382A},   {0x3B4D, 0x3B4D},   {0x4E00, 0x4E00},
    {0x4E03, 0x4E03},   {0x4E07, 0x4E07},   {0x4E09, 0x4E09},   {0x4E5D, 0x4E5D},   {0x4E8C, 0x4E8C},
    {0x4E94, 0x4E94},   {0x4E96, 0x4E96},   {0x4EBF, 0x4EC0},   {0x4EDF, 0x4EDF},   {0x4EE8, 0x4EE8},
    {0x4F0D, 0x4F0D},   {0x4F70, 0x4F70},   {0x5104, 0x5104},   {0x5146, 0x5146},   {0x5169, 0x5169},
    {0x516B, 0x516B},   {0x516D, 0x516D},   {0x5341, 0x5341},   {0x5343, 0x5345},   {0x534C, 0x534C},
    {0x53C1, 0x53C4},   {0x56DB, 0x56DB},   {0x58F1, 0x58F1},   {0x58F9, 0x58F9},   {0x5E7A, 0x5E7A},
    {0x5EFE, 0x5EFF},   {0x5F0C, 0x5F0E},   {0x5F10, 0x5F10},   {0x62FE, 0x62FE},   {0x634C, 0x634C},
    {0x67D2, 0x67D2},   {0x6F06, 0x6F06},   {0x7396, 0x7396},   {0x767E, 0x767E},   {0x8086, 0x8086},
    {0x842C, 0x842C},   {0x8CAE, 0x8CAE},   {0x8CB3, 0x8CB3},   {0x8D30, 0x8D30},   {0x9621, 0x9621},
    {0x9646, 0x9646},   {0x964C, 0x964C},   {0x9678, 0x9678},   {0x96F6, 0x96F6},   {0xF96B, 0xF96B},
    {0xF973, 0xF973},   {0xF978, 0xF978},   {0xF9B2, 0xF9B2},   {0xF9D1, 0xF9D1},   {0xF9D3, 0xF9D3},
    {0xF9FD, 0xF9FD},   {0x20001, 0x20001}, {0x20064, 0x20064}, {0x200E2, 0x200E2}, {0x20121, 0x20121},
    {0x2092A, 0x2092A}, {0x20983, 0x20983}, {0x2098C, 0x2098C}, {0x2099C, 0x2099C}, {0x20AEA, 0x20AEA},
    {0x20AFD, 0x20AFD}, {0x20B19, 0x20B19}, {0x22390, 0x22390}, {0x22998, 0x22998}, {0x23B1B, 0x23B1B},
    {0x2626D, 0x2626D}, {0x2F890, 0x2F890},
};

// str.isupper / str.islower beyond the categories Lu / Ll: Unicode's Other_Uppercase and
// Other_Lowercase (Roman numerals, circled letters, modifier letters).
// P = lambda c: c.isupper() and u.category(c) != 'Lu'
constexpr CodePointRange kOtherUppercase[] = {
    {0x2160, 0x216F}, {0x24B6, 0x24CF}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};
// P = lambda c: c.islower() and u.category(c) != 'Ll'
constexpr CodePointRange kOtherLowercase[] = {
    {0xAA, 0xAA},     {0xBA, 0xBA},     {0x2B0, 0x2B8},     {0x2C0, 0x2C1},     {0x2E0, 0x2E4},     {0x345, 0x345},
    {0x37A, 0x37A},   {0x1D2C, 0x1D6A}, {0x1D78, 0x1D78},   {0x1D9B, 0x1DBF},   {0x2071, 0x2071},   {0x207F, 0x207F},
    {0x2090, 0x209C}, {0x2170, 0x217F}, {0x24D0, 0x24E9},   {0x2C7C, 0x2C7D},   {0xA69C, 0xA69D},   {0xA770, 0xA770},
    {0xA7F8, 0xA7F9}, {0xAB5C, 0xAB5F}, {0x10780, 0x10780}, {0x10783, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA},
};

bool assigned_after_unicode14(char32_t c) { return c > 0x10FFFF || in_table(c, kAssignedAfterUnicode14); }

// The general category as Python 3.11's unicodedata.category gives it.
utf8proc_category_t category(char32_t c) {
  if (assigned_after_unicode14(c)) return UTF8PROC_CATEGORY_CN;
  return static_cast<utf8proc_category_t>(utf8proc_category(static_cast<utf8proc_int32_t>(c)));
}

char32_t simple_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (assigned_after_unicode14(c)) return c;
  return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c)));
}

char32_t simple_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (assigned_after_unicode14(c)) return c;
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}

char32_t simple_title(char32_t c) {
  if (c < 0x80) return simple_upper(c);
  if (assigned_after_unicode14(c)) return c;
  return static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c)));
}

bool is_title(char32_t c) { return c >= 0x80 && category(c) == UTF8PROC_CATEGORY_LT; }

// Python's case mappings where they are not the simple one-to-one mapping: one-to-many upper case
// (SpecialCasing.txt: ß → SS, ŉ → ʼN, the ligatures...) and title case different from upper case
// (ǅ, Georgian). Generated from CPython 3.11's unicodedata (Unicode 14.0).
struct SpecialCase {
  char32_t code_point;
  const char32_t* upper;  // nullptr: the simple mapping
  const char32_t* title;  // nullptr: as upper
};

constexpr SpecialCase kSpecialCases[] = {
    {0x00DF, U"\U00000053\U00000053", U"\U00000053\U00000073"},
    {0x0149, U"\U000002bc\U0000004e", nullptr},
    {0x01C4, nullptr, U"\U000001c5"},
    {0x01C5, nullptr, U"\U000001c5"},
    {0x01C6, nullptr, U"\U000001c5"},
    {0x01C7, nullptr, U"\U000001c8"},
    {0x01C8, nullptr, U"\U000001c8"},
    {0x01C9, nullptr, U"\U000001c8"},
    {0x01CA, nullptr, U"\U000001cb"},
    {0x01CB, nullptr, U"\U000001cb"},
    {0x01CC, nullptr, U"\U000001cb"},
    {0x01F0, U"\U0000004a\U0000030c", nullptr},
    {0x01F1, nullptr, U"\U000001f2"},
    {0x01F2, nullptr, U"\U000001f2"},
    {0x01F3, nullptr, U"\U000001f2"},
    {0x0390, U"\U00000399\U00000308\U00000301", nullptr},
    {0x03B0, U"\U000003a5\U00000308\U00000301", nullptr},
    {0x0587, U"\U00000535\U00000552", U"\U00000535\U00000582"},
    {0x10D0, nullptr, U"\U000010d0"},
    {0x10D1, nullptr, U"\U000010d1"},
    {0x10D2, nullptr, U"\U000010d2"},
    {0x10D3, nullptr, U"\U000010d3"},
    {0x10D4, nullptr, U"\U000010d4"},
    {0x10D5, nullptr, U"\U000010d5"},
    {0x10D6, nullptr, U"\U000010d6"},
    {0x10D7, nullptr, U"\U000010d7"},
    {0x10D8, nullptr, U"\U000010d8"},
    {0x10D9, nullptr, U"\U000010d9"},
    {0x10DA, nullptr, U"\U000010da"},
    {0x10DB, nullptr, U"\U000010db"},
    {0x10DC, nullptr, U"\U000010dc"},
    {0x10DD, nullptr, U"\U000010dd"},
    {0x10DE, nullptr, U"\U000010de"},
    {0x10DF, nullptr, U"\U000010df"},
    {0x10E0, nullptr, U"\U000010e0"},
    {0x10E1, nullptr, U"\U000010e1"},
    {0x10E2, nullptr, U"\U000010e2"},
    {0x10E3, nullptr, U"\U000010e3"},
    {0x10E4, nullptr, U"\U000010e4"},
    {0x10E5, nullptr, U"\U000010e5"},
    {0x10E6, nullptr, U"\U000010e6"},
    {0x10E7, nullptr, U"\U000010e7"},
    {0x10E8, nullptr, U"\U000010e8"},
    {0x10E9, nullptr, U"\U000010e9"},
    {0x10EA, nullptr, U"\U000010ea"},
    {0x10EB, nullptr, U"\U000010eb"},
    {0x10EC, nullptr, U"\U000010ec"},
    {0x10ED, nullptr, U"\U000010ed"},
    {0x10EE, nullptr, U"\U000010ee"},
    {0x10EF, nullptr, U"\U000010ef"},
    {0x10F0, nullptr, U"\U000010f0"},
    {0x10F1, nullptr, U"\U000010f1"},
    {0x10F2, nullptr, U"\U000010f2"},
    {0x10F3, nullptr, U"\U000010f3"},
    {0x10F4, nullptr, U"\U000010f4"},
    {0x10F5, nullptr, U"\U000010f5"},
    {0x10F6, nullptr, U"\U000010f6"},
    {0x10F7, nullptr, U"\U000010f7"},
    {0x10F8, nullptr, U"\U000010f8"},
    {0x10F9, nullptr, U"\U000010f9"},
    {0x10FA, nullptr, U"\U000010fa"},
    {0x10FD, nullptr, U"\U000010fd"},
    {0x10FE, nullptr, U"\U000010fe"},
    {0x10FF, nullptr, U"\U000010ff"},
    {0x1E96, U"\U00000048\U00000331", nullptr},
    {0x1E97, U"\U00000054\U00000308", nullptr},
    {0x1E98, U"\U00000057\U0000030a", nullptr},
    {0x1E99, U"\U00000059\U0000030a", nullptr},
    {0x1E9A, U"\U00000041\U000002be", nullptr},
    {0x1F50, U"\U000003a5\U00000313", nullptr},
    {0x1F52, U"\U000003a5\U00000313\U00000300", nullptr},
    {0x1F54, U"\U000003a5\U00000313\U00000301", nullptr},
    {0x1F56, U"\U000003a5\U00000313\U00000342", nullptr},
    {0x1F80, U"\U00001f08\U00000399", U"\U00001f88"},
    {0x1F81, U"\U00001f09\U00000399", U"\U00001f89"},
    {0x1F82, U"\U00001f0a\U00000399", U"\U00001f8a"},
    {0x1F83, U"\U00001f0b\U00000399", U"\U00001f8b"},
    {0x1F84, U"\U00001f0c\U00000399", U"\U00001f8c"},
    {0x1F85, U"\U00001f0d\U00000399", U"\U00001f8d"},
    {0x1F86, U"\U00001f0e\U00000399", U"\U00001f8e"},
    {0x1F87, U"\U00001f0f\U00000399", U"\U00001f8f"},
    {0x1F88, U"\U00001f08\U00000399", U"\U00001f88"},
    {0x1F89, U"\U00001f09\U00000399", U"\U00001f89"},
    {0x1F8A, U"\U00001f0a\U00000399", U"\U00001f8a"},
    {0x1F8B, U"\U00001f0b\U00000399", U"\U00001f8b"},
    {0x1F8C, U"\U00001f0c\U00000399", U"\U00001f8c"},
    {0x1F8D, U"\U00001f0d\U00000399", U"\U00001f8d"},
    {0x1F8E, U"\U00001f0e\U00000399", U"\U00001f8e"},
    {0x1F8F, U"\U00001f0f\U00000399", U"\U00001f8f"},
    {0x1F90, U"\U00001f28\U00000399", U"\U00001f98"},
    {0x1F91, U"\U00001f29\U00000399", U"\U00001f99"},
    {0x1F92, U"\U00001f2a\U00000399", U"\U00001f9a"},
    {0x1F93, U"\U00001f2b\U00000399", U"\U00001f9b"},
    {0x1F94, U"\U00001f2c\U00000399", U"\U00001f9c"},
    {0x1F95, U"\U00001f2d\U00000399", U"\U00001f9d"},
    {0x1F96, U"\U00001f2e\U00000399", U"\U00001f9e"},
    {0x1F97, U"\U00001f2f\U00000399", U"\U00001f9f"},
    {0x1F98, U"\U00001f28\U00000399", U"\U00001f98"},
    {0x1F99, U"\U00001f29\U00000399", U"\U00001f99"},
    {0x1F9A, U"\U00001f2a\U00000399", U"\U00001f9a"},
    {0x1F9B, U"\U00001f2b\U00000399", U"\U00001f9b"},
    {0x1F9C, U"\U00001f2c\U00000399", U"\U00001f9c"},
    {0x1F9D, U"\U00001f2d\U00000399", U"\U00001f9d"},
    {0x1F9E, U"\U00001f2e\U00000399", U"\U00001f9e"},
    {0x1F9F, U"\U00001f2f\U00000399", U"\U00001f9f"},
    {0x1FA0, U"\U00001f68\U00000399", U"\U00001fa8"},
    {0x1FA1, U"\U00001f69\U00000399", U"\U00001fa9"},
    {0x1FA2, U"\U00001f6a\U00000399", U"\U00001faa"},
    {0x1FA3, U"\U00001f6b\U00000399", U"\U00001fab"},
    {0x1FA4, U"\U00001f6c\U00000399", U"\U00001fac"},
    {0x1FA5, U"\U00001f6d\U00000399", U"\U00001fad"},
    {0x1FA6, U"\U00001f6e\U00000399", U"\U00001fae"},
    {0x1FA7, U"\U00001f6f\U00000399", U"\U00001faf"},
    {0x1FA8, U"\U00001f68\U00000399", U"\U00001fa8"},
    {0x1FA9, U"\U00001f69\U00000399", U"\U00001fa9"},
    {0x1FAA, U"\U00001f6a\U00000399", U"\U00001faa"},
    {0x1FAB, U"\U00001f6b\U00000399", U"\U00001fab"},
    {0x1FAC, U"\U00001f6c\U00000399", U"\U00001fac"},
    {0x1FAD, U"\U00001f6d\U00000399", U"\U00001fad"},
    {0x1FAE, U"\U00001f6e\U00000399", U"\U00001fae"},
    {0x1FAF, U"\U00001f6f\U00000399", U"\U00001faf"},
    {0x1FB2, U"\U00001fba\U00000399", U"\U00001fba\U00000345"},
    {0x1FB3, U"\U00000391\U00000399", U"\U00001fbc"},
    {0x1FB4, U"\U00000386\U00000399", U"\U00000386\U00000345"},
    {0x1FB6, U"\U00000391\U00000342", nullptr},
    {0x1FB7, U"\U00000391\U00000342\U00000399", U"\U00000391\U00000342\U00000345"},
    {0x1FBC, U"\U00000391\U00000399", U"\U00001fbc"},
    {0x1FC2, U"\U00001fca\U00000399", U"\U00001fca\U00000345"},
    {0x1FC3, U"\U00000397\U00000399", U"\U00001fcc"},
    {0x1FC4, U"\U00000389\U00000399", U"\U00000389\U00000345"},
    {0x1FC6, U"\U00000397\U00000342", nullptr},
    {0x1FC7, U"\U00000397\U00000342\U00000399", U"\U00000397\U00000342\U00000345"},
    {0x1FCC, U"\U00000397\U00000399", U"\U00001fcc"},
    {0x1FD2, U"\U00000399\U00000308\U00000300", nullptr},
    {0x1FD3, U"\U00000399\U00000308\U00000301", nullptr},
    {0x1FD6, U"\U00000399\U00000342", nullptr},
    {0x1FD7, U"\U00000399\U00000308\U00000342", nullptr},
    {0x1FE2, U"\U000003a5\U00000308\U00000300", nullptr},
    {0x1FE3, U"\U000003a5\U00000308\U00000301", nullptr},
    {0x1FE4, U"\U000003a1\U00000313", nullptr},
    {0x1FE6, U"\U000003a5\U00000342", nullptr},
    {0x1FE7, U"\U000003a5\U00000308\U00000342", nullptr},
    {0x1FF2, U"\U00001ffa\U00000399", U"\U00001ffa\U00000345"},
    {0x1FF3, U"\U000003a9\U00000399", U"\U00001ffc"},
    {0x1FF4, U"\U0000038f\U00000399", U"\U0000038f\U00000345"},
    {0x1FF6, U"\U000003a9\U00000342", nullptr},
    {0x1FF7, U"\U000003a9\U00000342\U00000399", U"\U000003a9\U00000342\U00000345"},
    {0x1FFC, U"\U000003a9\U00000399", U"\U00001ffc"},
    {0xFB00, U"\U00000046\U00000046", U"\U00000046\U00000066"},
    {0xFB01, U"\U00000046\U00000049", U"\U00000046\U00000069"},
    {0xFB02, U"\U00000046\U0000004c", U"\U00000046\U0000006c"},
    {0xFB03, U"\U00000046\U00000046\U00000049", U"\U00000046\U00000066\U00000069"},
    {0xFB04, U"\U00000046\U00000046\U0000004c", U"\U00000046\U00000066\U0000006c"},
    {0xFB05, U"\U00000053\U00000054", U"\U00000053\U00000074"},
    {0xFB06, U"\U00000053\U00000054", U"\U00000053\U00000074"},
    {0xFB13, U"\U00000544\U00000546", U"\U00000544\U00000576"},
    {0xFB14, U"\U00000544\U00000535", U"\U00000544\U00000565"},
    {0xFB15, U"\U00000544\U0000053b", U"\U00000544\U0000056b"},
    {0xFB16, U"\U0000054e\U00000546", U"\U0000054e\U00000576"},
    {0xFB17, U"\U00000544\U0000053d", U"\U00000544\U0000056d"},
};

const SpecialCase* special_case(char32_t c) {
  if (c < 0xDF) return nullptr;
  const auto* end = std::end(kSpecialCases);
  const auto* it = std::lower_bound(std::begin(kSpecialCases), end, c,
                                    [](const SpecialCase& s, char32_t v) { return s.code_point < v; });
  return it != end && it->code_point == c ? it : nullptr;
}

void append_upper(std::u32string& out, char32_t c) {
  const SpecialCase* special = special_case(c);
  if (special && special->upper)
    out += special->upper;
  else
    out += simple_upper(c);
}

void append_title(std::u32string& out, char32_t c) {
  const SpecialCase* special = special_case(c);
  if (special && special->title)
    out += special->title;
  else if (special && special->upper)
    out += special->upper;
  else
    out += simple_title(c);
}

bool is_cased(char32_t c);

// Unicode's Case_Ignorable, which Python's final-sigma rule looks past: the categories Mn, Me, Cf,
// Lm, Sk, and the apostrophes, periods and colons of Word_Break MidLetter, MidNumLet and
// Single_Quote (checked against Python's str.lower for every code point).
bool is_case_ignorable(char32_t c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
      return true;
    default:
      break;
  }
  static constexpr char32_t kWordBreakMid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,  0x5F4,  0x2018, 0x2019,
                                               0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  return std::binary_search(std::begin(kWordBreakMid), std::end(kWordBreakMid), c);
}

// The lower case of s[i]: İ becomes i̇, and Σ becomes ς at the end of a word (Python's rule).
void append_lower(std::u32string& out, const std::u32string& s, size_t i) {
  const char32_t c = s[i];
  if (c == 0x130) {
    out += U"i\u0307";
    return;
  }
  if (c == 0x3A3) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1])) --j;
    bool final_sigma = j > 0 && is_cased(s[j - 1]);
    if (final_sigma) {
      size_t k = i + 1;
      while (k < s.size() && is_case_ignorable(s[k])) ++k;
      final_sigma = k == s.size() || !is_cased(s[k]);
    }
    out += final_sigma ? char32_t{0x3C2} : char32_t{0x3C3};
    return;
  }
  out += simple_lower(c);
}

// Unicode's Cased: upper case, lower case or title case.
bool is_cased(char32_t c) { return is_upper(c) || is_lower(c) || is_title(c); }

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

// Python's slice-style normalisation of optional [start, end) against a length.
std::pair<int64_t, int64_t> adjust_indices(std::optional<int64_t> start, std::optional<int64_t> end, int64_t size) {
  int64_t s = start.value_or(0), e = end.value_or(size);
  if (e > size) e = size;
  if (e < 0) e = std::max<int64_t>(e + size, 0);
  if (s < 0) s = std::max<int64_t>(s + size, 0);
  return {s, e};
}

std::u32string_view view(const std::u32string& s) { return std::u32string_view(s); }

int64_t find_in(std::u32string_view haystack, std::u32string_view needle, int64_t start, int64_t end, bool from_right) {
  const auto size = static_cast<int64_t>(haystack.size());
  if (start > size) return -1;
  if (end - start < static_cast<int64_t>(needle.size())) return -1;
  const std::u32string_view window = haystack.substr(start, end - start);
  const size_t at = from_right ? window.rfind(needle) : window.find(needle);
  return at == std::u32string_view::npos ? -1 : start + static_cast<int64_t>(at);
}

std::vector<std::string> split_whitespace(const std::u32string& s, int64_t max_splits, bool from_right) {
  std::vector<std::string> parts;
  const auto n = static_cast<int64_t>(s.size());
  if (!from_right) {
    int64_t i = 0;
    while (true) {
      while (i < n && is_space(s[i])) ++i;
      if (i == n) break;
      if (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits) {
        int64_t j = n;
        while (j > i && is_space(s[j - 1])) --j;
        parts.push_back(encode(view(s).substr(i, j - i)));
        break;
      }
      int64_t j = i;
      while (j < n && !is_space(s[j])) ++j;
      parts.push_back(encode(view(s).substr(i, j - i)));
      i = j;
    }
    return parts;
  }
  int64_t i = n;
  while (true) {
    while (i > 0 && is_space(s[i - 1])) --i;
    if (i == 0) break;
    if (max_splits >= 0 && static_cast<int64_t>(parts.size()) == max_splits) {
      int64_t j = 0;
      while (j < i && is_space(s[j])) ++j;
      parts.push_back(encode(view(s).substr(j, i - j)));
      break;
    }
    int64_t j = i;
    while (j > 0 && !is_space(s[j - 1])) --j;
    parts.push_back(encode(view(s).substr(j, i - j)));
    i = j;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

}  // namespace

int64_t length(std::string_view utf8) {
  if (utf8::is_ascii(utf8)) return static_cast<int64_t>(utf8.size());
  return static_cast<int64_t>(decode(utf8).size());
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_printable(char32_t c) {
  if (c < 0x80) return c >= 0x20 && c < 0x7F;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

bool is_word(char32_t c) { return c == '_' || is_alnum(c); }

bool is_upper(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z';
  return category(c) == UTF8PROC_CATEGORY_LU || in_table(c, kOtherUppercase);
}

bool is_lower(char32_t c) {
  if (c < 0x80) return c >= 'a' && c <= 'z';
  return category(c) == UTF8PROC_CATEGORY_LL || in_table(c, kOtherLowercase);
}

bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return true;
    default:
      return false;
  }
}

bool is_decimal(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return category(c) == UTF8PROC_CATEGORY_ND;
}

bool is_digit(char32_t c) { return is_decimal(c) || (c >= 0x80 && in_table(c, kDigitsBeyondDecimal)); }

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  const utf8proc_category_t cat = category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO ||
         in_table(c, kNumericLetters);
}

bool is_alnum(char32_t c) { return is_alpha(c) || is_numeric(c); }

std::string upper(std::string_view s) {
  if (utf8::is_ascii(s)) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    return out;
  }
  std::u32string out;
  for (char32_t c : decode(s)) append_upper(out, c);
  return encode(out);
}

std::string lower(std::string_view s) {
  if (utf8::is_ascii(s)) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return out;
  }
  const std::u32string cps = decode(s);
  std::u32string out;
  for (size_t i = 0; i < cps.size(); ++i) append_lower(out, cps, i);
  return encode(out);
}

std::string swapcase(std::string_view s) {
  const std::u32string cps = decode(s);
  std::u32string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (is_upper(cps[i]))
      append_lower(out, cps, i);
    else if (is_lower(cps[i]))
      append_upper(out, cps[i]);
    else
      out += cps[i];
  }
  return encode(out);
}

std::string title(std::string_view s) {
  const std::u32string cps = decode(s);
  std::u32string out;
  bool previous_cased = false;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (previous_cased)
      append_lower(out, cps, i);
    else
      append_title(out, cps[i]);
    previous_cased = is_cased(cps[i]);
  }
  return encode(out);
}

std::string capitalize(std::string_view s) {
  const std::u32string cps = decode(s);
  std::u32string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (i == 0)
      append_title(out, cps[i]);
    else
      append_lower(out, cps, i);
  }
  return encode(out);
}

bool all_upper(std::string_view s) {
  bool cased = false;
  for (char32_t c : decode(s)) {
    if (is_lower(c) || is_title(c)) return false;
    if (is_upper(c)) cased = true;
  }
  return cased;
}

bool all_lower(std::string_view s) {
  bool cased = false;
  for (char32_t c : decode(s)) {
    if (is_upper(c) || is_title(c)) return false;
    if (is_lower(c)) cased = true;
  }
  return cased;
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string cps = decode(s);
  const std::u32string set = chars ? decode(*chars) : std::u32string();
  auto strippable = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : is_space(c); };
  size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strippable(cps[begin])) ++begin;
  if (right)
    while (end > begin && strippable(cps[end - 1])) --end;
  return encode(view(cps).substr(begin, end - begin));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& separator, int64_t max_splits) {
  if (!separator) return split_whitespace(decode(s), max_splits, false);
  if (separator->empty()) throw std::invalid_argument("empty separator");
  std::vector<std::string> parts;
  size_t begin = 0;
  while (max_splits < 0 || static_cast<int64_t>(parts.size()) < max_splits) {
    const size_t at = s.find(*separator, begin);
    if (at == std::string_view::npos) break;
    parts.emplace_back(s.substr(begin, at - begin));
    begin = at + separator->size();
  }
  parts.emplace_back(s.substr(begin));
  return parts;
}

std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& separator, int64_t max_splits) {
  if (!separator) return split_whitespace(decode(s), max_splits, true);
  if (separator->empty()) throw std::invalid_argument("empty separator");
  std::vector<std::string> parts;
  size_t end = s.size();
  while (max_splits < 0 || static_cast<int64_t>(parts.size()) < max_splits) {
    if (end < separator->size()) break;
    const size_t at = s.rfind(*separator, end - separator->size());
    if (at == std::string_view::npos) break;
    parts.emplace_back(s.substr(at + separator->size(), end - at - separator->size()));
    end = at;
  }
  parts.emplace_back(s.substr(0, end));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> splitlines(std::string_view s, bool keep_ends) {
  const std::u32string cps = decode(s);
  std::vector<std::string> lines;
  size_t begin = 0, i = 0;
  while (i < cps.size()) {
    if (!is_line_break(cps[i])) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    if (cps[i] == '\r' && end < cps.size() && cps[end] == '\n') ++end;
    lines.push_back(encode(view(cps).substr(begin, (keep_ends ? end : i) - begin)));
    begin = i = end;
  }
  if (begin < cps.size()) lines.push_back(encode(view(cps).substr(begin)));
  return lines;
}

std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count) {
  std::string out;
  if (old.empty()) {
    const std::u32string cps = decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += replacement;
        ++done;
      }
      if (i < cps.size()) append_utf8(out, cps[i]);
    }
    return out;
  }
  size_t begin = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, begin);
    if (at == std::string_view::npos) break;
    out += s.substr(begin, at - begin);
    out += replacement;
    begin = at + old.size();
    ++done;
  }
  out += s.substr(begin);
  return out;
}

int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end,
             bool from_right) {
  const std::u32string hay = decode(s), needle = decode(sub);
  const auto [b, e] = adjust_indices(start, end, static_cast<int64_t>(hay.size()));
  return find_in(hay, needle, b, e, from_right);
}

int64_t count(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end) {
  const std::u32string hay = decode(s), needle = decode(sub);
  const auto size = static_cast<int64_t>(hay.size());
  const auto [b, e] = adjust_indices(start, end, size);
  if (b > size || e < b) return 0;
  if (needle.empty()) return e - b + 1;
  int64_t n = 0;
  for (int64_t at = b; (at = find_in(hay, needle, at, e, false)) >= 0; at += static_cast<int64_t>(needle.size())) ++n;
  return n;
}

bool starts_with(std::string_view s, std::string_view prefix, std::optional<int64_t> start,
                 std::optional<int64_t> end) {
  const std::u32string hay = decode(s), needle = decode(prefix);
  const auto size = static_cast<int64_t>(hay.size());
  const auto [b, e] = adjust_indices(start, end, size);
  if (b > size || e - b < static_cast<int64_t>(needle.size())) return false;
  return view(hay).substr(b, needle.size()) == needle;
}

bool ends_with(std::string_view s, std::string_view suffix, std::optional<int64_t> start, std::optional<int64_t> end) {
  const std::u32string hay = decode(s), needle = decode(suffix);
  const auto size = static_cast<int64_t>(hay.size());
  const auto [b, e] = adjust_indices(start, end, size);
  if (b > size || e - b < static_cast<int64_t>(needle.size())) return false;
  return view(hay).substr(e - needle.size(), needle.size()) == needle;
}

std::string pad(std::string_view s, int64_t width, char32_t fill, char align) {
  const int64_t size = length(s);
  if (width <= size) return std::string(s);
  const int64_t margin = width - size;
  int64_t left = 0;
  if (align == '>') left = margin;
  if (align == '^') left = margin / 2 + (margin & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) append_utf8(out, fill);
  out += s;
  for (int64_t i = 0; i < margin - left; ++i) append_utf8(out, fill);
  return out;
}

std::string repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  char buffer[16];
  for (char32_t c : decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (is_printable(c)) {
      append_utf8(out, c);
    } else {
      if (c <= 0xFF)
        std::snprintf(buffer, sizeof buffer, "\\x%02x", static_cast<unsigned>(c));
      else if (c <= 0xFFFF)
        std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(c));
      else
        std::snprintf(buffer, sizeof buffer, "\\U%08x", static_cast<unsigned>(c));
      out += buffer;
    }
  }
  out += quote;
  return out;
}

std::string json_quote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  char buffer[16];
  auto escape_unit = [&](unsigned unit) {
    std::snprintf(buffer, sizeof buffer, "\\u%04x", unit);
    out += buffer;
  };
  for (char32_t c : decode(s)) {
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      escape_unit(c);
    } else if (ensure_ascii && c > 0x7E) {
      if (c >= 0x10000) {
        const char32_t v = c - 0x10000;
        escape_unit(0xD800 | (v >> 10));
        escape_unit(0xDC00 | (v & 0x3FF));
      } else {
        escape_unit(c);
      }
    } else {
      append_utf8(out, c);
    }
  }
  out += '"';
  return out;
}

std::string escape_html(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace fe::jinja::text
