//! English and Swedish. The language follows the browser and can be switched;
//! the choice is kept in local storage.

use leptos::prelude::*;

/// A UI language.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    /// English.
    En,
    /// Swedish.
    Sv,
}

impl Lang {
    /// The language from local storage, else the browser's, else English.
    pub fn detect() -> Lang {
        let window = web_sys::window();
        let saved = window
            .as_ref()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item("civicbase-lang").ok().flatten());
        let code = saved.or_else(|| window.and_then(|w| w.navigator().language()));
        match code.as_deref() {
            Some(c) if c.starts_with("sv") => Lang::Sv,
            _ => Lang::En,
        }
    }

    /// Remembers the choice.
    pub fn save(self) {
        if let Some(s) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
            let _ = s.set_item("civicbase-lang", self.code());
        }
    }

    /// The BCP 47 code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Sv => "sv",
        }
    }
}

/// Translates `key` into the current language (the key itself if missing).
pub fn t(lang: Lang, key: &'static str) -> &'static str {
    let sv = match lang {
        Lang::En => return en(key),
        Lang::Sv => sv(key),
    };
    if sv.is_empty() {
        en(key)
    } else {
        sv
    }
}

thread_local! {
    static LANG: std::cell::Cell<Option<RwSignal<Lang>>> = const { std::cell::Cell::new(None) };
}

/// Makes `lang` the signal every translation follows.
pub fn set_lang_signal(lang: RwSignal<Lang>) {
    LANG.with(|l| l.set(Some(lang)));
}

/// A reactive translation for use in views.
pub fn tr(key: &'static str) -> impl Fn() -> &'static str + Copy {
    let lang = LANG.with(|l| l.get());
    move || t(lang.map_or(Lang::En, |l| l.get()), key)
}

fn en(key: &'static str) -> &'static str {
    match key {
        "app.tagline" => "Keeps your community working offline",
        "onboard.title" => "Welcome to CivicBase",
        "onboard.intro" => "Your data stays on this device and syncs directly with the people you work with. Start by choosing the name others will see.",
        "onboard.name" => "Your name",
        "onboard.create" => "Create my identity",
        "onboard.restore" => "Restore from a backup",
        "onboard.backup" => "Backup text",
        "onboard.restore_btn" => "Restore",
        "err.name" => "Enter your name (1 to 120 characters).",
        "err.space_name" => "Enter a name for the space (1 to 120 characters).",
        "err.title" => "Enter a title.",
        "spaces.title" => "Your spaces",
        "spaces.none" => "No spaces yet. Create one, or open an invite link someone sent you.",
        "spaces.create" => "Create space",
        "spaces.name" => "Space name",
        "spaces.credit" => "Default credit limit (hearts)",
        "spaces.join" => "Join with an invite link",
        "spaces.link" => "Invite link",
        "spaces.join_btn" => "Join",
        "spaces.waiting" => "Waiting for the space's data: import a bundle file or connect to a member.",
        "tab.notices" => "Notices",
        "tab.decisions" => "Decisions",
        "tab.needs" => "Needs & offers",
        "tab.hearts" => "Hearts",
        "tab.members" => "Members",
        "tab.sync" => "Sync",
        "notices.new" => "New notice",
        "notices.title" => "Title",
        "notices.body" => "Text",
        "notices.post" => "Post",
        "notices.none" => "No notices yet.",
        "notices.pin" => "Pin",
        "notices.unpin" => "Unpin",
        "notices.delete" => "Delete",
        "notices.edit" => "Edit",
        "notices.save" => "Save",
        "notices.pinned" => "Pinned",
        "notices.posted" => "Notice posted.",
        "common.more" => "Show more",
        "common.cancel" => "Cancel",
        "common.back" => "All spaces",
        "common.saved" => "Saved.",
        "sync.identity" => "This device",
        "sync.tabs" => "Other tabs open",
        "sync.leader" => "This tab holds the network connections",
        "sync.follower" => "Another tab holds the network connections",
        "sync.pending" => "Entries waiting",
        "sync.peers" => "Peers",
        "sync.none" => "No peers connected.",
        "sync.storage" => "Storage used",
        "sync.persisted" => "Persistent storage",
        "sync.persist_yes" => "Granted: the browser will not clear this data on its own.",
        "sync.persist_no" => "Not granted: the browser may clear this data when the disk is full. Install the app or bookmark it to improve the odds.",
        "sync.persist_unknown" => "Unknown",
        "sync.export" => "Export bundle file",
        "sync.import" => "Import bundle file",
        "sync.imported" => "Import finished",
        "sync.backup" => "Show identity backup",
        "sync.backup_note" => "Keep this text secret and safe: it restores your identity on a new device.",
        "members.invite" => "Invite someone",
        "members.role" => "Role",
        "members.create_invite" => "Create invite link",
        "members.link" => "Send this link. The secret after # never reaches any server.",
        "role.0" => "Viewer",
        "role.1" => "Member",
        "role.2" => "Coordinator",
        "role.3" => "Admin",
        "lang.switch" => "Svenska",
        _ => key,
    }
}

fn sv(key: &'static str) -> &'static str {
    match key {
        "app.tagline" => "Håller er förening igång utan internet",
        "onboard.title" => "Välkommen till CivicBase",
        "onboard.intro" => "Dina data stannar på den här enheten och synkas direkt med dem du arbetar med. Börja med att välja namnet andra ser.",
        "onboard.name" => "Ditt namn",
        "onboard.create" => "Skapa min identitet",
        "onboard.restore" => "Återställ från säkerhetskopia",
        "onboard.backup" => "Säkerhetskopia",
        "onboard.restore_btn" => "Återställ",
        "err.name" => "Skriv ditt namn (1 till 120 tecken).",
        "err.space_name" => "Skriv ett namn på gruppen (1 till 120 tecken).",
        "err.title" => "Skriv en rubrik.",
        "spaces.title" => "Dina grupper",
        "spaces.none" => "Inga grupper än. Skapa en, eller öppna en inbjudningslänk som någon skickat.",
        "spaces.create" => "Skapa grupp",
        "spaces.name" => "Gruppens namn",
        "spaces.credit" => "Standardkredit (hjärtan)",
        "spaces.join" => "Gå med via inbjudningslänk",
        "spaces.link" => "Inbjudningslänk",
        "spaces.join_btn" => "Gå med",
        "spaces.waiting" => "Väntar på gruppens data: importera en paketfil eller anslut till en medlem.",
        "tab.notices" => "Anslag",
        "tab.decisions" => "Beslut",
        "tab.needs" => "Behov & erbjudanden",
        "tab.hearts" => "Hjärtan",
        "tab.members" => "Medlemmar",
        "tab.sync" => "Synk",
        "notices.new" => "Nytt anslag",
        "notices.title" => "Rubrik",
        "notices.body" => "Text",
        "notices.post" => "Publicera",
        "notices.none" => "Inga anslag än.",
        "notices.pin" => "Fäst",
        "notices.unpin" => "Lossa",
        "notices.delete" => "Ta bort",
        "notices.edit" => "Redigera",
        "notices.save" => "Spara",
        "notices.pinned" => "Fäst",
        "notices.posted" => "Anslaget är publicerat.",
        "common.more" => "Visa fler",
        "common.cancel" => "Avbryt",
        "common.back" => "Alla grupper",
        "common.saved" => "Sparat.",
        "sync.identity" => "Den här enheten",
        "sync.tabs" => "Andra öppna flikar",
        "sync.leader" => "Den här fliken håller nätverksanslutningarna",
        "sync.follower" => "En annan flik håller nätverksanslutningarna",
        "sync.pending" => "Poster som väntar",
        "sync.peers" => "Anslutna",
        "sync.none" => "Inga anslutna enheter.",
        "sync.storage" => "Använt lagringsutrymme",
        "sync.persisted" => "Beständig lagring",
        "sync.persist_yes" => "Beviljad: webbläsaren rensar inte dessa data av sig själv.",
        "sync.persist_no" => "Inte beviljad: webbläsaren kan rensa data när disken är full. Installera appen eller bokmärk den.",
        "sync.persist_unknown" => "Okänd",
        "sync.export" => "Exportera paketfil",
        "sync.import" => "Importera paketfil",
        "sync.imported" => "Importen är klar",
        "sync.backup" => "Visa säkerhetskopia av identiteten",
        "sync.backup_note" => "Håll texten hemlig och säker: den återställer din identitet på en ny enhet.",
        "members.invite" => "Bjud in någon",
        "members.role" => "Roll",
        "members.create_invite" => "Skapa inbjudningslänk",
        "members.link" => "Skicka länken. Hemligheten efter # når aldrig någon server.",
        "role.0" => "Läsare",
        "role.1" => "Medlem",
        "role.2" => "Samordnare",
        "role.3" => "Administratör",
        "lang.switch" => "English",
        _ => "",
    }
}
