package mailcorpus

// The vocabulary the corpus is written in. Domains are reserved names
// (RFC 2606, RFC 6761) and addresses are documentation ranges (RFC 5737,
// RFC 3849), so a corpus can never mail or resolve anyone real.

// person is a name part; ascii is how it appears in a local part.
type person struct {
	name  string
	ascii string
}

var firstNames = []person{
	{"James", "james"}, {"Mary", "mary"}, {"John", "john"}, {"Patricia", "patricia"},
	{"Robert", "robert"}, {"Jennifer", "jennifer"}, {"Michael", "michael"}, {"Linda", "linda"},
	{"William", "william"}, {"Elizabeth", "elizabeth"}, {"David", "david"}, {"Barbara", "barbara"},
	{"Richard", "richard"}, {"Susan", "susan"}, {"Joseph", "joseph"}, {"Jessica", "jessica"},
	{"Thomas", "thomas"}, {"Sarah", "sarah"}, {"Charles", "charles"}, {"Karen", "karen"},
	{"Daniel", "daniel"}, {"Nancy", "nancy"}, {"Matthew", "matthew"}, {"Lisa", "lisa"},
	{"Anthony", "anthony"}, {"Sandra", "sandra"}, {"Mark", "mark"}, {"Ashley", "ashley"},
	{"Priya", "priya"}, {"Wei", "wei"}, {"Aisha", "aisha"}, {"Kenji", "kenji"},
	{"Olga", "olga"}, {"Pieter", "pieter"}, {"Ingrid", "ingrid"}, {"Mateo", "mateo"},
	{"Fatima", "fatima"}, {"Lars", "lars"}, {"Chloe", "chloe"}, {"Noah", "noah"},
	// Non-ASCII: Latin-1 representable first, then beyond it.
	{"José", "jose"}, {"Jürgen", "juergen"}, {"Zoë", "zoe"}, {"François", "francois"},
	{"Søren", "soeren"}, {"Björn", "bjoern"}, {"Inês", "ines"}, {"Ángel", "angel"},
	{"Łukasz", "lukasz"}, {"Ömer", "oemer"}, {"Иван", "ivan"}, {"Αλέξανδρος", "alexandros"},
	{"太郎", "taro"}, {"伟", "wei"}, {"Đorđe", "djordje"}, {"Ευγενία", "evgenia"},
}

var lastNames = []person{
	{"Smith", "smith"}, {"Johnson", "johnson"}, {"Williams", "williams"}, {"Brown", "brown"},
	{"Jones", "jones"}, {"Garcia", "garcia"}, {"Miller", "miller"}, {"Davis", "davis"},
	{"Rodriguez", "rodriguez"}, {"Martinez", "martinez"}, {"Hernandez", "hernandez"}, {"Lopez", "lopez"},
	{"Wilson", "wilson"}, {"Anderson", "anderson"}, {"Taylor", "taylor"}, {"Moore", "moore"},
	{"Jackson", "jackson"}, {"Martin", "martin"}, {"Lee", "lee"}, {"Thompson", "thompson"},
	{"White", "white"}, {"Harris", "harris"}, {"Clark", "clark"}, {"Lewis", "lewis"},
	{"Patel", "patel"}, {"Nguyen", "nguyen"}, {"Kim", "kim"}, {"O'Brien", "obrien"},
	{"van der Berg", "vanderberg"}, {"Kowalski", "kowalski"}, {"Schmidt", "schmidt"}, {"Rossi", "rossi"},
	{"Yamamoto", "yamamoto"}, {"Okafor", "okafor"}, {"Larsen", "larsen"}, {"Dubois", "dubois"},
	{"Müller", "mueller"}, {"García", "garcia"}, {"Ångström", "angstrom"}, {"Lefèvre", "lefevre"},
	{"Kierkegård", "kierkegard"}, {"Nuñez", "nunez"}, {"Wójcik", "wojcik"}, {"Çelik", "celik"},
	{"Петров", "petrov"}, {"Παπαδόπουλος", "papadopoulos"}, {"山田", "yamada"}, {"李", "li"},
}

var domains = []string{
	"example.com", "example.org", "example.net", "mail.example.com", "acme.example",
	"globex.example", "initech.test", "umbrella.example", "hooli.test", "university.example",
	"cs.university.example", "bank.example", "shop.example", "news.example.net", "lists.example.org",
	"stark-industries.example", "wayne.example", "cyberdyne.test", "mailfleet.test", "eu.acme.example",
}

// roleLocals are local parts of senders that are not people.
var roleLocals = []string{
	"noreply", "no-reply", "info", "support", "billing", "notifications", "newsletter",
	"postmaster", "jira", "github-actions", "calendar-notification", "security-alerts",
}

var companies = []string{
	"ACME Corp", "Globex Corporation", "Initech", "Umbrella plc", "Hooli", "Stark Industries",
	"Wayne Enterprises", "Cyberdyne Systems", "Soylent GmbH", "Wonka Industries",
}

var listNames = []string{"dev", "announce", "users", "ops", "golang-nuts", "linux-kernel", "team-berlin", "security"}

var mailers = []string{
	"Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
	"Microsoft Outlook 16.0",
	"Apple Mail (2.3731.700.6)",
	"Roundcube Webmail/1.6.5",
	"Mutt/2.2.12 (2023-09-09)",
	"git-send-email 2.43.0",
	"K-9 Mail for Android",
	"Evolution 3.50.2",
	"Microsoft-MacOutlook/16.80.23121017",
	"PHPMailer 6.8.1 (https://github.com/PHPMailer/PHPMailer)",
}

// english is the bulk of every text.
var english = []string{
	"the", "of", "and", "to", "a", "in", "for", "is", "on", "that", "by", "this", "with", "you",
	"it", "not", "or", "be", "are", "from", "at", "as", "your", "all", "have", "new", "more",
	"an", "was", "we", "will", "can", "us", "about", "if", "my", "has", "but", "our", "one",
	"other", "do", "no", "time", "they", "he", "up", "may", "what", "which", "their", "out",
	"use", "any", "there", "see", "only", "so", "his", "when", "here", "who", "also", "now",
	"help", "get", "view", "first", "been", "would", "how", "were", "me", "some", "these",
	"like", "service", "than", "find", "price", "date", "back", "top", "people", "had", "list",
	"name", "just", "over", "state", "year", "day", "into", "email", "two", "health", "world",
	"next", "used", "go", "work", "last", "most", "products", "music", "buy", "data", "make",
	"them", "should", "business", "system", "please", "meeting", "report", "review", "budget",
	"deadline", "project", "release", "customer", "invoice", "attached", "draft", "schedule",
	"server", "deployment", "storage", "cluster", "mailbox", "quarter", "team", "thanks",
	"regards", "question", "update", "proposal", "contract", "agenda", "tomorrow", "friday",
	"monday", "office", "travel", "approval", "feedback", "design", "document", "version",
	"issue", "ticket", "migration", "database", "latency", "incident", "postmortem", "roadmap",
	"hiring", "interview", "lunch", "conference", "slides", "workshop", "estimate", "forecast",
}

// latin words are representable in ISO-8859-1, so a text of english and
// latin words can be sent in that charset.
var latin = []string{
	"Grüße", "Büro", "Besprechung", "Straße", "Änderung", "müssen", "schön", "Köln", "München",
	"réunion", "équipe", "déjà", "très", "fête", "garçon", "à", "été", "année", "naïve", "crème",
	"mañana", "señor", "año", "niño", "información", "está", "también", "São", "ação", "coração",
	"smørrebrød", "fjäll", "Øresund", "Ålesund", "højskole", "café", "résumé", "façade", "jalapeño",
}

// world words need UTF-8.
var world = []string{
	"Привет", "спасибо", "встреча", "отчёт", "завтра", "Καλημέρα", "ευχαριστώ", "συνάντηση",
	"こんにちは", "会議", "ありがとうございます", "報告書", "你好", "谢谢", "明天", "会议",
	"안녕하세요", "감사합니다", "שלום", "مرحبا", "नमस्ते", "Łódź", "Dziękuję", "Türkçe", "İstanbul",
	"čeština", "Žluťoučký", "€100", "✓", "→", "…", "–", "🙂", "👍", "🎉", "☕",
}

var subjectPhrases = []string{
	"Quarterly report", "Meeting notes", "Lunch on Friday?", "Budget review", "Project update",
	"Action required: confirm your attendance", "Weekly status", "Question about the contract",
	"Draft proposal for review", "Travel plans", "Welcome to the team", "Interview schedule",
	"Release checklist", "Incident postmortem", "Your account", "Invitation: planning session",
	"Reminder", "Follow up", "Slides from today", "Offsite agenda", "Hello", "FYI", "Quick question",
}

var subjectPhrasesIntl = []string{
	"Réunion de l'équipe demain", "Besprechung am Montag – bitte bestätigen", "Grüße aus Köln",
	"Счёт на оплату", "Отчёт за квартал", "会議の議事録", "明天的会议", "Συνάντηση την Τρίτη",
	"🎉 Congratulations on the launch!", "Café ☕ tomorrow?", "Año nuevo, proyecto nuevo",
	"Smørrebrød på fredag", "Ihre Bestellung wurde versandt", "Résumé et lettre de motivation",
	"Zpráva o projektu Žluťoučký kůň", "İstanbul toplantısı", "¿Nos vemos mañana?",
}

// latinSubjects is the part of subjectPhrasesIntl that fits ISO-8859-1.
var latinSubjects = []string{
	"Réunion de l'équipe demain", "Grüße aus Köln", "Año nuevo, proyecto nuevo",
	"Smørrebrød på fredag", "Ihre Bestellung wurde versandt", "Résumé et lettre de motivation",
	"¿Nos vemos mañana?",
}

// attachment types: binary ones carry pseudo-random bytes behind a real
// magic number, so content sniffers see what the type says.
type attachType struct {
	mime   string
	ext    string
	magic  string
	binary bool
}

var attachTypes = []attachType{
	{"application/pdf", "pdf", "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", true},
	{"application/pdf", "pdf", "%PDF-1.4\n", true},
	{"image/jpeg", "jpg", "\xff\xd8\xff\xe0\x00\x10JFIF\x00", true},
	{"image/jpeg", "jpeg", "\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", true},
	{"image/png", "png", "\x89PNG\r\n\x1a\n", true},
	{"application/zip", "zip", "PK\x03\x04", true},
	{"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx", "PK\x03\x04", true},
	{"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx", "PK\x03\x04", true},
	{"application/vnd.openxmlformats-officedocument.presentationml.presentation", "pptx", "PK\x03\x04", true},
	{"application/octet-stream", "bin", "", true},
	{"image/gif", "gif", "GIF89a", true},
	{"text/csv", "csv", "", false},
	{"text/plain", "txt", "", false},
	{"text/plain", "log", "", false},
}

var fileBases = []string{
	"report", "invoice-2023-0042", "IMG_4521", "Scan_20240102", "contract_v3_signed",
	"meeting-notes", "logo", "Screenshot 2024-03-01 at 10.15.42", "budget", "presentation",
	"Q3 results final (2)", "photo", "export", "server.log", "agenda", "CV",
}

var fileBasesIntl = []string{
	"Übersicht Q3", "Präsentation – final", "résumé", "счёт-фактура", "見積書", "Ελληνικά",
	"café menu", "Protokoll der Sitzung vom 12. März", "año fiscal", "設計レビュー資料",
}
