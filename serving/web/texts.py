"""Every word the pages show, Vietnamese first, English second."""
from __future__ import annotations

TEXTS: dict[str, tuple[str, str]] = {
    # member page
    "member_title": ("Xếp hạng số của bạn", "Your digital ranking"),
    "tier": ("Hạng của bạn", "Your tier"),
    "score": ("Điểm", "Score"),
    "as_of": ("Tính đến ngày {date}", "As of {date}"),
    "where_you_stand": ("Bạn đứng ở đâu", "Where you stand"),
    "pct_cooperative": ("Bạn đứng trên {p}% thành viên trong hợp tác xã",
                        "You rank above {p}% of the members of your cooperative"),
    "pct_province": ("Bạn đứng trên {p}% thành viên trong tỉnh", "You rank above {p}% of the members in your province"),
    "pct_sector": ("Bạn đứng trên {p}% thành viên cùng ngành nghề",
                   "You rank above {p}% of the members in your line of business"),
    "trend": ("Điểm của bạn qua thời gian", "Your score over time"),
    "trend_alt": ("Biểu đồ điểm qua {n} lần xếp hạng, từ {first} đến {last} điểm",
                  "Chart of your score over {n} rankings, from {first} to {last} points"),
    "reasons": ("Điều đang kéo điểm của bạn xuống", "What holds your score back"),
    "no_reasons": ("Không có điều gì đáng kể kéo điểm xuống.", "Nothing significant holds your score back."),
    "actions": ("Việc bạn có thể làm để lên hạng", "What you can do to move up"),
    "score_after": ("Điểm dự kiến sau khi làm: {after} (tăng {gain} điểm)",
                    "Expected score after: {after} (up {gain} points)"),
    "not_enough": ("Chưa đủ dữ liệu để xếp hạng", "Not enough data yet to rank you"),
    "not_enough_body": ("Hãy tiếp tục giao dịch qua nền tảng. Còn thiếu:",
                        "Keep trading through the platform. What is missing:"),
    "not_computed": ("Chưa tính xếp hạng", "Ranking not computed yet"),
    "not_computed_body": ("Bảng xếp hạng chưa được tính. Vui lòng quay lại sau.",
                          "The ranking has not been computed yet. Please come back later."),
    "not_computed_admin": ("Người quản trị: chạy `coopscore rank`.",
                           "For the operator: run `coopscore rank`."),
    "model_version": ("Phiên bản mô hình {v}", "Model version {v}"),
    "private": ("Trang này chỉ dành cho bạn. Đừng chia sẻ đường dẫn.",
                "This page is for you only. Do not share its link."),
    # errors
    "forbidden_title": ("Không có quyền truy cập", "Access denied"),
    "forbidden_body": ("Đường dẫn không hợp lệ hoặc đã hết hạn. Hãy xin đường dẫn mới từ hợp tác xã.",
                       "This link is not valid or has expired. Ask your cooperative for a new one."),
    "not_found_title": ("Không tìm thấy trang", "Page not found"),
    "not_found_body": ("Trang này không tồn tại. Hãy dùng đường dẫn được gửi cho bạn.",
                       "This page does not exist. Use the link you were sent."),
    "error_title": ("Đã có lỗi", "Something went wrong"),
    "error_body": ("Yêu cầu không thực hiện được. Vui lòng thử lại.", "The request could not be completed. Please try again."),
    # console
    "console": ("Bàn làm việc cán bộ tín dụng", "Loan officer console"),
    "login_title": ("Đăng nhập", "Sign in"),
    "login_help": ("Dùng khóa API của quỹ (do `coopscore banks add` cấp).",
                   "Use your fund's API key (issued by `coopscore banks add`)."),
    "api_key": ("Khóa API của quỹ", "Fund API key"),
    "sign_in": ("Đăng nhập", "Sign in"),
    "sign_out": ("Đăng xuất", "Sign out"),
    "login_failed": ("Khóa không được chấp nhận.", "The key was not accepted."),
    "login_scope": ("Khóa này không có quyền dùng bàn làm việc.", "This key may not use the console."),
    "signed_in_as": ("Quỹ: {bank}", "Fund: {bank}"),
    "queue": ("Hồ sơ vay chờ xét", "Applicant queue"),
    "queue_count": ("{n} trên {total} hồ sơ gần nhất", "{n} of the {total} most recent applications"),
    "filters": ("Lọc", "Filters"),
    "cooperative": ("Hợp tác xã", "Cooperative"),
    "province": ("Tỉnh", "Province"),
    "sector": ("Ngành nghề", "Sector"),
    "grade": ("Hạng tín dụng", "Grade"),
    "all": ("Tất cả", "All"),
    "apply": ("Lọc", "Apply"),
    "clear": ("Bỏ lọc", "Clear"),
    "export": ("Tải CSV", "Export CSV"),
    "application": ("Hồ sơ", "Application"),
    "member": ("Thành viên", "Member"),
    "date": ("Ngày nộp", "Date"),
    "amount": ("Số tiền (VND)", "Amount (VND)"),
    "term": ("Kỳ hạn (tháng)", "Term (months)"),
    "pd": ("Xác suất vỡ nợ", "Probability of default"),
    "sort_by": ("Sắp xếp theo {col}", "Sort by {col}"),
    "insufficient": ("Chưa đủ lịch sử", "Not enough history"),
    "back": ("Về hàng chờ", "Back to the queue"),
    "applicant": ("Hồ sơ {id}", "Application {id}"),
    "contributions": ("Các yếu tố ảnh hưởng đến điểm", "What moves the score"),
    "contrib_alt": ("Biểu đồ thanh ngang: {n} yếu tố ảnh hưởng nhiều nhất, tính bằng điểm; thanh bên phải làm tăng điểm, bên trái làm giảm điểm",
                    "Horizontal bar chart of the {n} features that move the score most, in points; bars to the right raise the score, to the left lower it"),
    "reasons_console": ("Lý do chính", "Main reasons"),
    "whatif": ("Thử thay đổi số tiền và kỳ hạn", "What if: amount and term"),
    "rescore": ("Tính lại điểm", "Re-score"),
    "whatif_invalid": ("Số tiền phải là số nguyên dương, kỳ hạn từ 1 đến 120 tháng.",
                       "The amount must be a positive whole number and the term 1 to 120 months."),
    "decision": ("Quyết định", "Decision"),
    "note": ("Ghi chú (lý do quyết định)", "Note (why)"),
    "approve": ("Duyệt", "Approve"),
    "decline": ("Từ chối", "Decline"),
    "decided_approved": ("Đã ghi nhận: duyệt.", "Recorded: approved."),
    "decided_declined": ("Đã ghi nhận: từ chối.", "Recorded: declined."),
    "decision_refused": ("Chưa ghi nhận quyết định: hệ thống chấm điểm từ chối hồ sơ với số tiền và kỳ hạn này.",
                         "The decision was not recorded: the scorer refuses this application at this "
                         "amount and term."),
    "decision_over_limit": ("Chưa ghi nhận quyết định: số tiền vượt hạn mức cho vay không có tài sản bảo đảm "
                            "theo Nghị định 156/2025/NĐ-CP. Hãy giảm số tiền.",
                            "The decision was not recorded: the amount is above the unsecured lending "
                            "limit of Decree 156/2025/ND-CP. Lower the amount."),
    "decision_insufficient": ("Chưa ghi nhận quyết định: thành viên chưa đủ lịch sử giao dịch để chấm điểm.",
                              "The decision was not recorded: the member does not have enough transaction "
                              "history to be scored."),
    "no_consent_row": ("Không hiển thị khi chưa có đồng ý", "Not shown without consent"),
    # consent: a fund sees a member's score only with the member's consent (Law 91/2025/QH15)
    "no_consent": ("Chưa có đồng ý cho quỹ", "No consent for this fund"),
    "consent_none": ("thành viên chưa đồng ý cho quỹ dùng dữ liệu để chấm điểm tín dụng",
                     "the member has not consented to this fund using their data for credit scoring"),
    "consent_revoked": ("thành viên đã rút lại đồng ý ngày {date}", "the member withdrew consent on {date}"),
    "consent_expired": ("đồng ý đã hết hạn ngày {date}", "the consent expired on {date}"),
    "consent_not_started": ("đồng ý chỉ có hiệu lực từ ngày {date}", "the consent only starts on {date}"),
    "no_consent_body": ("Điểm, hạng, lý do và tính thử chỉ hiển thị khi thành viên đồng ý cho quỹ dùng dữ liệu "
                        "giao dịch để chấm điểm tín dụng (Luật Bảo vệ dữ liệu cá nhân số 91/2025/QH15). "
                        "Thành viên cấp hoặc gia hạn đồng ý trên nền tảng hợp tác xã điện tử; quỹ không "
                        "ghi nhận thay được.",
                        "Score, grade, reasons and what-if are shown only while the member consents to this "
                        "fund using their transaction data for credit scoring (Personal Data Protection Law "
                        "No. 91/2025/QH15). The member grants or renews consent on the e-cooperative "
                        "platform; the fund cannot record it for them."),
    "no_consent_decision": ("Chưa ghi nhận được quyết định: cần đồng ý của thành viên trước.",
                            "The decision was not recorded: the member's consent comes first."),
    "queue_no_consent": ("{k} hồ sơ chưa có đồng ý cho quỹ: không hiển thị điểm.",
                         "{k} applications without consent for this fund: no score shown."),
    "session_key_gone": ("Phiên làm việc đã kết thúc vì khóa API của quỹ đã bị thu hồi hoặc hết hạn. "
                         "Hãy đăng nhập bằng khóa mới do quản trị viên cấp.",
                         "Your session ended because the fund's API key was revoked or has expired. "
                         "Sign in with a new key from your administrator."),
    "audit_unavailable_title": ("Chưa ghi được nhật ký truy cập", "The access log could not be written"),
    "audit_unavailable_body": ("Mọi lần xem dữ liệu của thành viên đều phải được ghi lại, nên trang chưa được "
                               "hiển thị. Vui lòng thử lại sau ít phút.",
                               "Every view of a member's data must be recorded, so the page is not shown. "
                               "Please try again in a few minutes."),
    "skip": ("Bỏ qua, tới nội dung chính", "Skip to main content"),
    "language": ("Ngôn ngữ", "Language"),
}


def text(key: str, lang: str, **values) -> str:
    vi, en = TEXTS.get(key, (key, key))
    chosen = en if lang == "en" else vi
    return chosen.format(**values) if values else chosen
